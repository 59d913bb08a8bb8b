"""Errors that are the user's to fix: the CLI prints them and exits with status 2, the app shows them."""


class BadInputError(ValueError):
    """Bad input: the message says what is wrong, where (file, line or example id), and what to do."""
