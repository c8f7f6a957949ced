"""The base of every error the platform raises on purpose: its message is for a person, not a traceback."""


class PlatformError(Exception):
    """What was wrong, where, and what to do; the CLI prints the message alone."""
