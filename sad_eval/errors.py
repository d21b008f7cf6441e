"""One exception type for user-facing problems: the CLI prints its message as one line."""


class SadEvalError(Exception):
    """A problem the user can fix (bad input, missing data, unknown name)."""
