"""Rule-based segmentation of ReAct text into [REASON] / [ACT] spans, and span -> token masks.

SAD (Structured Agent Distillation, §3.2-3.3 and Appendix D/F) splits each teacher trajectory by
rule: ``Reasoning:`` text is a REASON span, ``Action:`` text (and HotPotQA's final ``Answer:``)
an ACT span. Here the rules are data: each env's spec (`EnvSpec.segmentation`) maps each line
marker to a span kind (``None`` = context, never supervised).

Choices written down (docs/segmentation.md):
- A span runs from its marker to the next marker (or the end of the text), so it includes the
  marker itself and the trailing newline. For *training masks* the marker is supervised with its
  span: the student must emit ``Reasoning:``/``Action:`` to be parsed at evaluation, and the
  newline after the action is how generation stops. For *metrics* (ARL, CoT match) only the
  body after the marker counts (``Span.body``).
- A marker is recognised at a line start or after whitespace, so the paper's one-line example
  ``Reasoning: … Action: goto kitchen`` splits as well as the two-line format.
- A token belongs to the span it overlaps most (ties: the earlier span); so ``m_reason + m_act <= 1``
  by construction, and a BPE token like `` Action`` that starts with the reasoning's trailing
  space goes to ACT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from sad_eval.envs.spec import ACT, REASON, cached_by_registry, env_specs, find_spec
from sad_eval.errors import SadEvalError

__all__ = ["REASON", "ACT", "rules", "rule_table", "segment", "format_turn", "parse_turn", "linearize"]


@cached_by_registry
def rules() -> dict[str, dict[str, str | None]]:
    """Every named rule table (marker -> span kind; `None` = context, the env's own words): each
    env's default rule under its name, and the alternatives it declares (`EnvSpec.extra_rules`,
    e.g. ``hotpotqa-two-phase``)."""
    return {name: dict(table) for spec in env_specs() for name, table in spec.rules.items()}


def _rule(name: str) -> dict[str, str | None] | None:
    return rules().get(name)


def rule_table(env: str, rule: str | None = None) -> dict[str, str | None]:
    name = rule or env
    table = _rule(name)
    if table is None:
        raise SadEvalError(f"unknown segmentation rule {name!r}; choose one of {', '.join(sorted(rules()))}")
    return table


def _marker_re(markers: Sequence[str]) -> re.Pattern[str]:
    alt = "|".join(sorted(map(re.escape, markers), key=len, reverse=True))
    return re.compile(rf"(?:^|(?<=\s))({alt}):", re.M)


@dataclass(frozen=True)
class Span:
    kind: str  # REASON or ACT
    start: int  # marker start (mask span: [start, end))
    end: int
    body_start: int  # body without marker and surrounding whitespace: [body_start, body_end)
    body_end: int
    marker: str

    def body(self, text: str) -> str:
        return text[self.body_start:self.body_end]


def segment(text: str, env: str, rule: str | None = None) -> list[Span]:
    """Character spans of kind REASON/ACT in ``text`` under ``env``'s rule table."""
    table = rule_table(env, rule)
    hits = list(_marker_re(list(table)).finditer(text))
    spans = []
    for i, m in enumerate(hits):
        kind = table[m.group(1)]
        end = hits[i + 1].start() if i + 1 < len(hits) else len(text)
        if kind is None:
            continue
        b0, b1 = m.end(), end
        while b0 < b1 and text[b0].isspace():
            b0 += 1
        while b1 > b0 and text[b1 - 1].isspace():
            b1 -= 1
        if b1 == b0:
            continue  # an empty `Action:` is no action
        spans.append(Span(kind, m.start(), end, b0, b1, m.group(1)))
    return spans


def require_reason_and_act(spans: Sequence[Span], where: str = "trajectory") -> None:
    kinds = {s.kind for s in spans}
    missing = [k for k in (REASON, ACT) if k not in kinds]
    if missing:
        raise SadEvalError(f"{where} has no {' and no '.join(missing)} span (expected `Reasoning:` and `Action:` lines)")


# ---------------------------------------------------------------- turns: format and parse

def _answer_action(env: str) -> tuple[str, str, str] | None:
    """How an env's terminal action is written on its own line (`EnvSpec.answer_action`): HotPotQA's
    ``finish[x]`` is the line ``Answer: x`` (paper Appendix E.1), and parsing maps it back."""
    spec = find_spec(env)
    return spec.answer_action if spec is not None else None


def format_action(env: str, action: str) -> str:
    """The transcript line for an env action (``Action: x``, or ``Answer: x`` for a finish)."""
    answer = _answer_action(env)
    if answer:
        m = re.match(answer[0], action.strip(), re.S)
        if m:
            return f"{answer[1]}: {m.group(1)}"
    return f"Action: {action}"


def format_turn(env: str, reasoning: str, action: str) -> str:
    """One assistant turn as the student must generate it."""
    return f"Reasoning: {reasoning.strip()}\n{format_action(env, action.strip())}\n"


@dataclass
class ParsedTurn:
    reasoning: str
    action: str
    valid: bool  # False: no action marker; `action` is then the raw text


def parse_turn(env: str, text: str) -> ParsedTurn:
    """Split generated text into reasoning and the env action, with the same rules as `segment`.

    Without an action marker the raw text (stripped) becomes the action and the turn is invalid:
    the env answers with its own error observation.
    """
    spans = segment(text, env)
    reasons = [s.body(text) for s in spans if s.kind == REASON]
    acts = [s for s in spans if s.kind == ACT]
    if not acts:
        return ParsedTurn(" ".join(reasons).strip(), text.strip(), False)
    act = acts[0]
    body = act.body(text).split("\n", 1)[0].strip()  # one action line
    answer = _answer_action(env)
    if answer and act.marker == answer[1]:
        body = answer[2].format(body)
    return ParsedTurn(" ".join(reasons).strip(), body, bool(body))


def linearize(steps: Sequence[Any], env: str, observations: bool = True) -> str:
    """A plain transcript of an episode's turns (``Reasoning:``/``Action:``/``Observation:`` lines)."""
    out = []
    for s in steps:
        r, a, o = (s.reasoning, s.action, s.observation) if hasattr(s, "reasoning") else (
            s["reasoning"], s["action"], s.get("observation", ""))
        out.append(format_turn(env, r, a))
        if observations and o:
            out.append(f"Observation: {o.strip()}\n")
    return "".join(out)


# ---------------------------------------------------------------- token masks

@dataclass
class TokenMasks:
    input_ids: list[int]
    offsets: list[tuple[int, int]]
    m_reason: list[int]
    m_act: list[int]


def assign_tokens(offsets: Sequence[tuple[int, int]], spans: Sequence[Span]) -> tuple[list[int], list[int]]:
    """Binary masks from token char offsets: each token goes to the span it overlaps most."""
    m_reason = [0] * len(offsets)
    m_act = [0] * len(offsets)
    ordered = sorted(spans, key=lambda s: s.start)
    j = 0
    for i, (a, b) in enumerate(offsets):
        if b <= a:
            continue  # special tokens carry (0, 0)
        while j < len(ordered) and ordered[j].end <= a:
            j += 1
        best, best_kind = 0, None
        k = j
        while k < len(ordered) and ordered[k].start < b:
            ov = min(b, ordered[k].end) - max(a, ordered[k].start)
            if ov > best:
                best, best_kind = ov, ordered[k].kind
            k += 1
        if best_kind == REASON:
            m_reason[i] = 1
        elif best_kind == ACT:
            m_act[i] = 1
    return m_reason, m_act


def token_masks(text: str, spans: Sequence[Span], tokenizer, add_special_tokens: bool = False) -> TokenMasks:
    """Tokenize ``text`` with a fast tokenizer and build disjoint REASON/ACT masks."""
    if not getattr(tokenizer, "is_fast", False):
        raise SadEvalError(
            f"tokenizer {type(tokenizer).__name__} has no offset mapping (a fast tokenizer is required for span masks)"
        )
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=add_special_tokens)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    m_reason, m_act = assign_tokens(offsets, spans)
    return TokenMasks(list(enc["input_ids"]), offsets, m_reason, m_act)


def validate_masks(masks: TokenMasks, spans: Sequence[Span], text: str) -> dict[str, float]:
    """Overlap (tokens in both masks; must be 0) and coverage: the share of each kind's non-space
    span characters that fall in tokens of the same kind."""
    overlap = sum(1 for r, a in zip(masks.m_reason, masks.m_act) if r and a)
    report: dict[str, float] = {"tokens": len(masks.input_ids), "overlap": overlap,
                                "reason_tokens": sum(masks.m_reason), "act_tokens": sum(masks.m_act)}
    for kind, mask in ((REASON, masks.m_reason), (ACT, masks.m_act)):
        want = {c for s in spans if s.kind == kind for c in range(s.start, s.end) if not text[c].isspace()}
        got = {c for (a, b), m in zip(masks.offsets, mask) if m for c in range(a, b)}
        report[f"{kind.lower()}_coverage"] = (len(want & got) / len(want)) if want else 1.0
    return report
