"""`python -m engine.cli ...`: the command line without the terminal app."""

from engine.cli.main import main

main()
