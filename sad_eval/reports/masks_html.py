"""Tokens coloured by span (blue reasoning, red action; the paper's Figure 7), as HTML or rich text."""

from __future__ import annotations

import html
from typing import Sequence

from rich.text import Text

from sad_eval.segment import TokenMasks

REASON_COLOR, ACT_COLOR = "#2b6cb0", "#c53030"
STYLE = """<style>
body{font-family:ui-monospace,monospace;font-size:13px;line-height:1.6;max-width:1100px;margin:2em auto}
.tok{white-space:pre-wrap;border-radius:2px}
.r{background:#bee3f8;color:#1a365d}.a{background:#fed7d7;color:#742a2a}.c{color:#555}
h2{font-family:sans-serif;font-size:15px;margin-top:2em}.legend span{padding:2px 6px;margin-right:8px}
</style>"""


def _pieces(text: str, masks: TokenMasks):
    """(substring, kind) per token, plus untokenized gaps as context."""
    pos = 0
    for (a, b), r, act in zip(masks.offsets, masks.m_reason, masks.m_act):
        if b <= a:
            continue
        if a > pos:
            yield text[pos:a], "c"
        yield text[a:b], "r" if r else ("a" if act else "c")
        pos = max(pos, b)
    if pos < len(text):
        yield text[pos:], "c"


def masks_to_html_block(title: str, text: str, masks: TokenMasks) -> str:
    body = "".join(f'<span class="tok {k}">{html.escape(s)}</span>' for s, k in _pieces(text, masks))
    return f"<h2>{html.escape(title)}</h2>\n<div>{body}</div>"


def html_page(blocks: Sequence[str], title: str = "sad-eval span masks") -> str:
    legend = ('<p class="legend"><span class="r">[REASON] tokens</span><span class="a">[ACT] tokens</span>'
              '<span class="c">context (not supervised)</span></p>')
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{STYLE}</head>"
            f"<body><h1>{html.escape(title)}</h1>{legend}{''.join(blocks)}</body></html>\n")


def masks_to_rich(text: str, masks: TokenMasks) -> Text:
    out = Text()
    for s, k in _pieces(text, masks):
        out.append(s, style={"r": "bold blue", "a": "bold red", "c": "dim"}[k])
    return out
