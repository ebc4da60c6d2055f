"""Errors the CLI shows as one clear line instead of a traceback."""


class PhoenixError(Exception):
    """An expected failure: the message says what failed and what to do next."""
