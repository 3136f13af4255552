class TslError(Exception):
    """A user-facing error: one line, exit status 2."""
