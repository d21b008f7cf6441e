"""URL pieces shared by the server and the client: the original's literal syntax, parsed safely.

The original server ran `ast.literal_eval` on the `options` and `keywords` URL segments (they
are Python reprs: `{'color': 'black'}`, `['red', 'shoes']`). We accept exactly a dict of
str -> str and a list of str, by walking the parsed AST; nothing is evaluated.
"""

from __future__ import annotations

import ast
from urllib.parse import quote

MAX_LITERAL = 4096  # longer segments are refused (parsing cost is linear, but bound it anyway)


class BadLiteral(ValueError):
    """A URL segment that is not the literal the route expects."""


def _str_node(node: ast.AST, what: str) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    raise BadLiteral(f"{what} must be a string literal")


def _parse(text: str, kind: str) -> ast.AST:
    if len(text) > MAX_LITERAL:
        raise BadLiteral(f"{kind} literal longer than {MAX_LITERAL} characters")
    try:
        return ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        raise BadLiteral(f"{kind} is not a valid literal: {e.__class__.__name__}") from None


def parse_options(text: str) -> dict[str, str]:
    """`{'color': 'black', 'size': 'large'}` -> dict; `{}` or empty -> {}."""
    if not text.strip():
        return {}
    node = _parse(text, "options")
    if not isinstance(node, ast.Dict):
        raise BadLiteral("options must be a dict literal like {'color': 'black'}")
    out = {}
    for k, v in zip(node.keys, node.values):
        if k is None:
            raise BadLiteral("options may not use ** unpacking")
        out[_str_node(k, "an option name")] = _str_node(v, "an option value")
    return out


def parse_keywords(text: str) -> list[str]:
    """The keywords segment: a list literal `['red', 'shoes']` or plain words `red shoes`."""
    text = text.strip()
    if text.startswith("["):
        node = _parse(text, "keywords")
        if not isinstance(node, (ast.List, ast.Tuple)):
            raise BadLiteral("keywords must be a list literal like ['red', 'shoes']")
        return [_str_node(e, "a keyword") for e in node.elts]
    return [text] if text else []


def options_literal(options: dict[str, str]) -> str:
    """The repr the original's `url_for(options=dict)` put in URLs."""
    return repr(dict(options))


def seg(value: object) -> str:
    """One URL path segment, percent-encoded (slashes included)."""
    return quote(str(value), safe="")
