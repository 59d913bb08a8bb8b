"""CLI commands for metrics, maps, selections and imported dynamics (registered on `engine.cli.cli`)."""
