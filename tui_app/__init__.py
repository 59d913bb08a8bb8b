"""The Textual app. Reads through storage, launches and watches jobs through engine."""
