"""Flatten a WebShop page (ours or the original's) into ReAct-style text plus its clickables.

Clickables are what a person could click: buttons (the form's action is the target), product
links (`a.product-link`), and option labels (the radio's `data-url`). Text hidden by
`display:none`/`hidden` and the head are skipped, as ReAct's scraper skipped invisible text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

SCORE_LINE = "Your score (min 0.0, max 1.0)"
_SKIP_TAGS = {"head", "script", "style", "title", "meta", "noscript"}
_VOID = {"input", "br", "img", "meta", "link", "hr", "wbr", "source", "area", "col", "base", "embed"}


@dataclass
class Clickable:
    label: str
    url: str
    kind: str  # button | product | option
    group: str = ""  # option name, for options
    selected: bool = False


@dataclass
class Item:
    kind: str  # text | click
    text: str
    click: Clickable | None = None
    in_instruction: bool = False


@dataclass
class Page:
    items: list[Item] = field(default_factory=list)
    clickables: list[Clickable] = field(default_factory=list)
    instruction: str = ""
    search_action: str | None = None  # the search form's URL when the page has a search bar
    reward: float | None = None

    def find(self, label: str) -> Clickable | None:
        """Exact label, then case-insensitive, then without stray brackets/quotes."""
        for cand in (label, label.strip()):
            for c in self.clickables:
                if c.label == cand:
                    return c
        key = label.strip().strip("[]'\"").strip().casefold()
        for c in self.clickables:
            if c.label.casefold() == key:
                return c
        return None


class _Parser(HTMLParser):
    def __init__(self, base_url: str):
        super().__init__(convert_charrefs=True)
        self.base = base_url
        self.page = Page()
        self.stack: list[tuple[str, bool, dict]] = []  # (tag, hidden, attrs)
        self.form_action: str | None = None
        self.form_has_search = False
        self.radio: dict | None = None
        self.text_buf: list[str] = []
        self.capture: str | None = None  # button | product | option
        self.capture_attrs: dict = {}

    # -- state helpers
    def _hidden(self) -> bool:
        return any(h for _, h, _ in self.stack)

    def _in(self, pred) -> bool:
        return any(pred(tag, attrs) for tag, _, attrs in self.stack)

    def handle_starttag(self, tag, attrs_list):
        attrs = {k: (v or "") for k, v in attrs_list}
        style = attrs.get("style", "").replace(" ", "").lower()
        hidden = tag in _SKIP_TAGS or "hidden" in attrs or "display:none" in style or attrs.get("type") == "hidden"
        if tag == "form":
            self.form_action = urljoin(self.base, attrs.get("action", "")) if attrs.get("action") else self.base
            self.form_has_search = False
        elif tag == "input":
            if attrs.get("name") == "search_query":
                self.form_has_search = True
            elif attrs.get("type") == "radio":
                self.radio = {"url": urljoin(self.base, attrs.get("data-url", "")), "group": attrs.get("name", ""),
                              "checked": "checked" in attrs}
        elif tag == "button" and not self._hidden():
            self._flush()
            self.capture, self.capture_attrs = "button", {"url": self.form_action or self.base,
                                                          "search": self.form_has_search}
        elif tag == "a" and "product-link" in attrs.get("class", "").split() and not self._hidden():
            self._flush()
            self.capture, self.capture_attrs = "product", {"url": urljoin(self.base, attrs.get("href", ""))}
        elif tag == "label" and self.radio is not None and not self._hidden():
            self._flush()
            self.capture, self.capture_attrs = "option", dict(self.radio)
            self.radio = None
        if tag not in _VOID:
            self.stack.append((tag, hidden, attrs))
        if tag in ("br", "p", "div", "h1", "h2", "h3", "h4", "h5", "li", "pre"):
            self._flush()

    def handle_endtag(self, tag):
        if self.capture and tag in ("button", "a", "label") and {"button": "button", "a": "product",
                                                                   "label": "option"}[tag] == self.capture:
            label = " ".join("".join(self.text_buf).split())
            self.text_buf = []
            a = self.capture_attrs
            if label:
                if self.capture == "button" and a.get("search"):
                    self.page.search_action = a["url"]
                    self.page.items.append(Item("text", "[Search]"))
                else:
                    c = Clickable(label, a["url"], self.capture, a.get("group", ""), a.get("checked", False))
                    self.page.clickables.append(c)
                    self.page.items.append(Item("click", label, c))
            self.capture = None
            return
        if tag == "form":
            self.form_action = None
        self._flush()
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        if self._hidden() and not self.capture:
            return
        self.text_buf.append(data)

    def _flush(self):
        if self.capture:
            return
        text = " ".join("".join(self.text_buf).split())
        self.text_buf = []
        if text:
            inst = self._in(lambda t, a: a.get("id") == "instruction-text")
            self.page.items.append(Item("text", text, in_instruction=inst))

    def close(self):
        super().close()
        self._flush()


def parse_page(html: str, url: str) -> Page:
    p = _Parser(url)
    p.feed(html)
    p.close()
    page = p.page
    texts = [i.text for i in page.items if i.kind == "text"]
    for i, t in enumerate(texts):
        if t.startswith(SCORE_LINE):
            rest = t[len(SCORE_LINE):].strip(" :") or (texts[i + 1] if i + 1 < len(texts) else "")
            try:
                page.reward = float(rest.split()[0])
            except (ValueError, IndexError):
                pass
    inst = [i.text for i in page.items if i.in_instruction]
    if inst:
        first = re.sub(r"^Instruction:\s*", "", inst[0]).strip()
        page.instruction = first or (re.sub(r"^Instruction:\s*", "", inst[1]) if len(inst) > 1 else "")
    return page


def render(page: Page) -> str:
    """ReAct-style observation: one clickable `[x]` per line, options on one line per option
    name with the chosen one as `[[x]]`, the instruction only on the search page."""
    if page.reward is not None:
        return f"Thank you for shopping with us! {SCORE_LINE}: {page.reward}"
    lines: list[str] = []
    if page.search_action is not None:
        return f"WebShop\nInstruction:\n{page.instruction}\n[Search]"
    opt_line: list[str] = []
    group: str | None = None
    for it in page.items:
        if it.in_instruction:
            continue
        c = it.click
        if c is not None and c.kind == "option":
            if c.group != group:  # a new option row: "name [v1] [v2]"
                if opt_line:
                    lines.append(" ".join(opt_line))
                head = lines.pop() if lines and lines[-1] == c.group else c.group
                opt_line, group = [head] if head else [], c.group
            opt_line.append(f"[[{it.text}]]" if c.selected else f"[{it.text}]")
            continue
        if opt_line:
            lines.append(" ".join(opt_line))
            opt_line, group = [], None
        lines.append(f"[{it.text}]" if c is not None else it.text)
    if opt_line:
        lines.append(" ".join(opt_line))
    return "\n".join(lines)
