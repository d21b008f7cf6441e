"""One exception type for user-facing problems: the CLI prints its message as one line."""

import re


class SadEvalError(Exception):
    """A problem the user can fix (bad input, missing data, unknown name)."""


_CREDENTIALS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]*@")


def redact_url(text: str) -> str:
    """``scheme://user:pass@host`` -> ``scheme://***@host`` anywhere in ``text``: credentials in
    a --base-url must land neither in manifests nor in error lines."""
    return _CREDENTIALS.sub(r"\1***@", text)
