"""The one prompt builder, used by the harness (to generate) and by the trainer (to supervise).

A conversation is: a system message (the env's ReAct instruction, optionally with few-shot
exemplars), the task as the first user message, then per turn an assistant message
(``Reasoning: …`` / ``Action: …``) and a user message (``Observation: …``). It renders either
through the tokenizer's chat template or as plain text (``chat=False``), and the renderer
reports where each assistant message sits in the text, so the trainer can segment exactly the
characters the student would generate.

The instructions paraphrase the paper's Appendix E.1 templates (not copied); each env declares
its own in its spec (`EnvSpec.instruction`, `act_line`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from sad_eval.envs.spec import get_spec
from sad_eval.segment import format_turn

FORMAT_RULES = (
    "Answer every turn with exactly two lines:\n"
    "Reasoning: <what you know, what you need next, and why>\n"
    "{act_line}\n"
)

def system_prompt(env: str, exemplars: Sequence[str] = ()) -> str:
    """The env's ReAct instruction and the turn format (`EnvSpec.instruction`, `act_line`)."""
    spec = get_spec(env)
    text = spec.instruction + "\n" + FORMAT_RULES.format(act_line=spec.act_line)
    if exemplars:
        text += "\nHere are examples.\n\n" + "\n\n".join(e.strip() for e in exemplars) + "\n"
    return text


def observation_message(obs: str) -> str:
    return f"Observation: {obs.strip()}"


ELIDED = "Observation: [earlier observation elided]"
# marks turns the context policy dropped (appended to the task message, the only place that keeps
# the user/assistant alternation of the chat format intact)
OMITTED = "[{n} earlier turns omitted]"
TRUNCATED = " [... observation truncated]"
# observations are elided (and turns dropped) this many at a time, so a context stays a prefix of
# the next turn's for several turns and a KV cache of it stays valid (agents/hf.py)
ELIDE_BLOCK = 4


def build_messages(env: str, task: str, steps: Sequence[Any] = (), exemplars: Sequence[str] = (),
                   elide: int = 0, drop: int = 0, last_obs: str | None = None) -> list[dict[str, str]]:
    """The conversation so far. ``steps`` have reasoning/action/observation (objects or dicts).

    Context overflow (see `build_context`): the first ``drop`` turns are left out behind a marker
    in the task message, the observations of steps before ``elide`` are replaced by a short marker,
    and ``last_obs`` (if given) replaces the latest observation's text (a shortened page)."""
    task_text = task.strip()
    if drop:
        task_text += "\n\n" + OMITTED.format(n=drop)
    msgs = [{"role": "system", "content": system_prompt(env, exemplars)},
            {"role": "user", "content": task_text}]
    n = len(steps)
    for i, s in enumerate(steps):
        if i < drop:
            continue
        get = (lambda k: getattr(s, k)) if hasattr(s, "reasoning") else (lambda k: s.get(k, ""))
        msgs.append({"role": "assistant", "content": format_turn(env, get("reasoning"), get("action"))})
        if i == n - 1 and last_obs is not None:
            obs = observation_message(last_obs)
        else:
            obs = ELIDED if i < elide else observation_message(get("observation"))
        msgs.append({"role": "user", "content": obs})
    return msgs


@dataclass
class Rendered:
    text: str
    turns: list[tuple[int, int]] = field(default_factory=list)  # assistant content char spans
    # what the context policy did (set by `build_context`)
    tokens: int | None = None  # tokens of ``text`` (when a tokenizer was given)
    elided: int = 0  # observations replaced by the elision marker
    dropped: int = 0  # oldest turns left out
    obs_truncated: bool = False  # the latest observation was shortened to fit
    obs_visible: bool = True  # some of the latest observation is in the context (false only when the head fills the budget)


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
    """Messages and rendering that fit ``max_tokens - reserve`` tokens: the one context policy,
    used by the harness at every turn and by the trainer for every training window.

    Always kept: the system prompt, the task and the latest observation (the page or room the agent
    acts on). While the context is too long, in this order:
      1. the oldest observations but the latest are elided, ``ELIDE_BLOCK`` at a time;
      2. then the oldest turns are dropped, ``ELIDE_BLOCK`` at a time, behind a marker in the task
         message (the last turn is always kept);
      3. then the latest observation is shortened to what fits, with a visible marker.
    Blocks keep a context a prefix of the next turns' contexts (cache reuse); the policy is a
    function of ``steps`` alone, so training and evaluation see the same context for a turn.
    """
    n = len(steps)

    def attempt(elide: int, drop: int, last_obs: str | None = None):
        msgs = build_messages(env, task, steps, exemplars, elide=elide, drop=drop, last_obs=last_obs)
        rendered = render(msgs, tokenizer, chat, add_generation_prompt)
        if tokenizer is not None:
            rendered.tokens = _ntok(tokenizer, rendered.text)
        rendered.elided, rendered.dropped = max(0, min(elide, n - 1) - drop), drop
        return msgs, rendered

    msgs, rendered = attempt(0, 0)
    if max_tokens is None or tokenizer is None or n == 0:
        return msgs, rendered
    budget = max_tokens - reserve
    if rendered.tokens <= budget:
        return msgs, rendered
    for e in _blocks(n - 1):
        msgs, rendered = attempt(e, 0)
        if rendered.tokens <= budget:
            return msgs, rendered
    for d in _blocks(n - 1):
        msgs, rendered = attempt(n - 1, d)
        if rendered.tokens <= budget:
            return msgs, rendered
    # only the head, the last turn and the latest observation are left: shorten the observation
    last = steps[-1]
    obs = (last.observation if hasattr(last, "observation") else last.get("observation", "")).strip()
    _, bare = attempt(n - 1, n - 1, last_obs=TRUNCATED.strip())
    room = budget - bare.tokens
    enc = tokenizer(obs, add_special_tokens=False, return_offsets_mapping=True)
    keep = max(0, room - 1)  # a token of slack: text cut at a token boundary can retokenize longer
    while True:
        cut = enc["offset_mapping"][keep - 1][1] if keep > 0 else 0
        msgs, rendered = attempt(n - 1, n - 1, last_obs=obs[:cut].rstrip() + TRUNCATED)
        rendered.obs_truncated = True
        rendered.obs_visible = cut > 0
        if rendered.tokens <= budget or keep == 0:
            return msgs, rendered  # (with keep == 0 the head alone is over budget: shown as is)
        keep = max(0, keep - max(1, rendered.tokens - budget))


def _blocks(n: int) -> list[int]:
    """ELIDE_BLOCK, 2*ELIDE_BLOCK, ... up to and including ``n`` (n >= 1)."""
    return sorted({min(n, b) for b in range(ELIDE_BLOCK, n + ELIDE_BLOCK, ELIDE_BLOCK)}) if n > 0 else []


def _ntok(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])
