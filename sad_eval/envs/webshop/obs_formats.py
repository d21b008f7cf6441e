"""The two observation texts people train WebShop agents on, made from a page's HTML:

- `react`: ReAct's WebShop client (ysymyth/ReAct `WebShop.ipynb`, `webshop_text`): each visible
  text node on its own line, buttons and product links as `[x]`, option values appended to their
  option name as `[x]` (`[[x]]` when chosen); on every page but the search page the first two
  plain texts (the instruction's label and text) are dropped; only the first 3 results of a
  results page are shown (the rest stay clickable). The env answers an option click with
  `You have clicked X.` and a purchase with `Your score (min 0.0, max 1.0): S`, as that client did.
- `simple`: the original `WebAgentTextEnv(observation_mode="text")`: the stripped visible text
  nodes joined by ` [SEP] `.

Both re-implemented from the descriptions of those clients (no code copied). Text nodes under
`display:none`/`hidden` (the done page's purchase/target block) are left out of both: that block
holds the goal, and the original text env rendered it empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser

from sad_eval.envs.webshop.html_text import SCORE_LINE

_SKIP = {"head", "script", "style", "title", "meta", "noscript"}
_VOID = {"input", "br", "img", "meta", "link", "hr", "wbr", "source", "area", "col", "base", "embed"}


@dataclass
class TextNode:
    text: str  # stripped
    raw: str  # as in the page (ReAct's client kept the spaces around a text)
    parent: str  # tag name of the enclosing element
    classes: tuple[str, ...]
    checked: bool = False  # a label whose radio is checked


class _Nodes(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, tuple[str, ...]]] = []
        self.nodes: list[TextNode] = []
        self.radio_checked = False

    def handle_starttag(self, tag, attrs_list):
        attrs = {k: (v or "") for k, v in attrs_list}
        if tag == "input" and attrs.get("type") == "radio":
            self.radio_checked = "checked" in attrs
        if tag in _VOID:
            return
        style = attrs.get("style", "").replace(" ", "").lower()
        hidden = tag in _SKIP or "hidden" in attrs or "display:none" in style
        self.stack.append((tag, hidden, tuple(attrs.get("class", "").split())))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        text = data.strip()
        if not text or not self.stack or any(h for _, h, _ in self.stack):
            return
        tag, _, classes = self.stack[-1]
        self.nodes.append(TextNode(text, data, tag, classes, tag == "label" and self.radio_checked))


def text_nodes(html: str) -> list[TextNode]:
    p = _Nodes()
    p.feed(html)
    p.close()
    return p.nodes


def simple_text(html: str) -> str:
    """WebAgentTextEnv's `text` observation."""
    return " [SEP] ".join(n.text for n in text_nodes(html))


def react_text(html: str, search_page: bool) -> str:
    """ReAct's client text of a page (its option-click and score answers are the env's)."""
    nodes = text_nodes(html)
    texts = [n.text for n in nodes]
    if SCORE_LINE in texts:
        i = texts.index(SCORE_LINE)
        return f"{SCORE_LINE}: {texts[i + 1] if i + 1 < len(texts) else ''}"
    out: list[str] = []
    plain = 0  # plain texts seen (the first two are the instruction, dropped past the search page)
    products = 0
    since_product = 0  # nodes since the last product link: a hidden result's title and price follow it
    for n in nodes:
        t = n.raw
        if n.parent == "button":
            piece = f"\n[{t}] "
        elif n.parent == "label":
            piece = f"[[{t}]]" if n.checked else f"[{t}]"
        elif "product-link" in n.classes:
            piece = f"\n[{t}] " if products < 3 else ""
            products += 1
            since_product = 0
        else:
            piece = f"\n{t} "
            if plain < 2 and not search_page:
                piece = ""
            if since_product <= 2 and products >= 4:
                piece = ""
            plain += 1
        since_product += 1
        out.append(piece)
    return "".join(out)
