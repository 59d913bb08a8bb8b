"""CLI commands for training, evaluation and jobs (registered on `engine.cli.cli`)."""
