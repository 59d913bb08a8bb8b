"""The `dynascope` command line (click). `engine.cli.main` builds the group from the command modules."""
