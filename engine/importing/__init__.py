"""Importing datasets (`sources`: SQuAD JSON, JSONL, CSV / TSV, Parquet, hub) and training dynamics logged by
allenai/cartography (`cartography`)."""
