"""Synthetic data generation: the openai client, the response cache, the local server, the pipelines."""
