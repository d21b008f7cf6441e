"""The one prompt builder, used by the harness (to generate) and by the trainer (to supervise).

A conversation is: a system message (the env's ReAct instruction, optionally with few-shot
exemplars), the task as the first user message, then per turn an assistant message
(``Reasoning: …`` / ``Action: …``) and a user message (``Observation: …``). It renders either
through the tokenizer's chat template or as plain text (``chat=False``), and the renderer
reports where each assistant message sits in the text, so the trainer can segment exactly the
characters the student would generate.

The instructions paraphrase the paper's Appendix E.1 templates (not copied).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from sad_eval.segment import format_turn

FORMAT_RULES = (
    "Answer every turn with exactly two lines:\n"
    "Reasoning: <what you know, what you need next, and why>\n"
    "{act_line}\n"
)

INSTRUCTIONS: dict[str, str] = {
    "alfworld": (
        "You are an agent in a household. Interact with the room to finish the task. "
        "Useful actions: go to X, open X, close X, take X from Y, put X in/on Y, clean X with Y, "
        "heat X with Y, cool X with Y, use X, examine X, look, inventory."
    ),
    "webshop": (
        "You are shopping on a web store for the item described in the instruction. "
        "Actions: search[keywords] on a search page, click[label] on a button or option shown in [ ]. "
        "Pick the options the instruction asks for, then click[Buy Now]."
    ),
    "hotpotqa": (
        "Answer the question by searching a Wikipedia store. Actions: search[entity] returns the first "
        "sentences of that page or similar titles; lookup[keyword] returns the next sentence with the "
        "keyword on the current page. When you know the answer, give it on an Answer line."
    ),
}

ACT_LINES = {
    "alfworld": "Action: <one command>",
    "webshop": "Action: <search[...] or click[...]>",
    "hotpotqa": "Action: <search[...] or lookup[...]>   (or, at the end, Answer: <short answer>)",
}


def system_prompt(env: str, exemplars: Sequence[str] = ()) -> str:
    if env not in INSTRUCTIONS:
        raise KeyError(env)
    text = INSTRUCTIONS[env] + "\n" + FORMAT_RULES.format(act_line=ACT_LINES[env])
    if exemplars:
        text += "\nHere are examples.\n\n" + "\n\n".join(e.strip() for e in exemplars) + "\n"
    return text


def observation_message(obs: str) -> str:
    return f"Observation: {obs.strip()}"


ELIDED = "Observation: [earlier observation elided]"


def build_messages(env: str, task: str, steps: Sequence[Any] = (), exemplars: Sequence[str] = (),
                   elide: int = 0) -> list[dict[str, str]]:
    """The conversation so far. ``steps`` have reasoning/action/observation (objects or dicts);
    the first ``elide`` observations are replaced by a short marker (context overflow)."""
    msgs = [{"role": "system", "content": system_prompt(env, exemplars)},
            {"role": "user", "content": task.strip()}]
    for i, s in enumerate(steps):
        get = (lambda k: getattr(s, k)) if hasattr(s, "reasoning") else (lambda k: s.get(k, ""))
        msgs.append({"role": "assistant", "content": format_turn(env, get("reasoning"), get("action"))})
        msgs.append({"role": "user", "content": ELIDED if i < elide else observation_message(get("observation"))})
    return msgs


@dataclass
class Rendered:
    text: str
    turns: list[tuple[int, int]] = field(default_factory=list)  # assistant content char spans


def render(messages: Sequence[dict[str, str]], tokenizer=None, chat: bool = True,
           add_generation_prompt: bool = True) -> Rendered:
    """Text of a conversation and the char span of each assistant message's content.

    With ``chat`` and a tokenizer that has a chat template, the template renders it; otherwise a
    plain transcript: system text, task, then the turns and observations one after another.
    With ``add_generation_prompt`` the text ends where the model's next turn starts.
    """
    use_template = chat and tokenizer is not None and getattr(tokenizer, "chat_template", None)
    if use_template:
        text = tokenizer.apply_chat_template(list(messages), tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    else:
        parts = []
        for m in messages:
            body = m["content"]
            parts.append(body if body.endswith("\n") else body + "\n")
            if m["role"] == "system":
                parts.append("\n")
        text = "".join(parts)
    turns, pos = [], 0
    for m in messages:
        idx = text.find(m["content"], pos)
        if idx < 0:
            raise ValueError("chat template altered a message; cannot locate it in the rendered text")
        if m["role"] == "assistant":
            turns.append((idx, idx + len(m["content"])))
        pos = idx + len(m["content"])
    return Rendered(text, turns)


def build_context(env: str, task: str, steps: Sequence[Any], tokenizer=None, chat: bool = True,
                  max_tokens: int | None = None, exemplars: Sequence[str] = (),
                  add_generation_prompt: bool = True, reserve: int = 0) -> tuple[list[dict[str, str]], Rendered]:
    """Messages and rendering that fit ``max_tokens - reserve`` tokens, eliding the oldest
    observations first (the task and all turns are kept)."""
    elide = 0
    while True:
        msgs = build_messages(env, task, steps, exemplars, elide=elide)
        rendered = render(msgs, tokenizer, chat, add_generation_prompt)
        if max_tokens is None or tokenizer is None or elide >= len(steps):
            return msgs, rendered
        n = len(tokenizer(rendered.text, add_special_tokens=False)["input_ids"])
        if n + reserve <= max_tokens:
            return msgs, rendered
        elide += 1
