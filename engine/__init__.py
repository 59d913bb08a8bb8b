"""Tasks, training with dynamics recording, metrics, selection, evaluation, jobs and the CLI. No textual here."""
