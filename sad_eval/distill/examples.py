"""Teacher trajectories -> training sequences in the harness's prompt format, with span masks.

For turn k the harness shows the student exactly
    build_context(env, prompt, steps[:k], tokenizer, chat, max_tokens=seq_len, reserve=reserve)
(``reserve`` = the harness's max_new_tokens; the context policy in `agents/prompts.py` always keeps
the system prompt, the task and the latest observation) and expects the assistant content
``format_turn(env, reasoning_k, action_k)``. A training sequence is that context followed by the
content, and the next turns packed after it while each one's own context extends the window's text
and context + content fits in ``seq_len`` tokens. Policy (docs/distill.md):

1. Window start, turn k: ``context_k + content_k``, exactly the eval context of turn k. A content
   longer than ``reserve`` (a turn the student could not finish at eval, counted as over budget)
   may take the window past ``seq_len`` by its excess; nothing is cut.
2. Packing: turn j = k+1, … joins while ``context_j`` starts with the window's text (true while no
   further observation is elided: elision goes in blocks, `prompts.ELIDE_BLOCK`) and fits.
3. Otherwise a new window starts at turn j. Earlier turns reappear there as context only.
4. Only when the system prompt and task alone exceed the budget (the policy then shows them as
   is) is a sequence cut: it keeps its head and its most recent tokens, and is counted as truncated.

Masks (0/1 per token, marking *target* tokens):
- REASON/ACT: the window's target turns are segmented with `sad_eval.segment` (span offsets shifted
  into the full text) and tokens are assigned by `assign_tokens` on the full text's offsets.
  Everything else (system prompt, task, observations, template tokens, earlier turns) is context.
- TRAJ (the ``token`` baseline): every token after the system message (for later windows: after
  the last turn already supervised by an earlier window), so each trajectory token of an episode is
  a target exactly once. Includes task, observations, elision markers, template tokens and turns.
- Turns the teacher produced without a parsable action (``Step.invalid``) stay in the context but
  are not targets.
"""

from __future__ import annotations

import warnings
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from sad_eval.agents.prompts import build_context, build_messages, render
from sad_eval.segment import assign_tokens, format_turn, segment
from sad_eval.topk_format import context_digest
from sad_eval.trajectory import Episode


@dataclass
class Example:
    """One training sequence (a window of one episode)."""

    input_ids: list[int]
    m_reason: list[int]
    m_act: list[int]
    m_traj: list[int]
    env: str
    task_id: str
    sample: int
    window: int  # index of this window within its episode
    turns: list[int]  # target turn indices (steps) in this window
    turn_tokens: list[tuple[int, int, int]] = field(default_factory=list)  # (turn, tok_start, tok_end) of contents
    truncated: bool = False
    # turn -> `topk_format.context_digest` of the conversation before it (checked against
    # collection-time top-k sidecars)
    turn_context: dict[int, bytes] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return episode_key(self.task_id, self.sample)

    def __len__(self) -> int:
        return len(self.input_ids)


def episode_key(task_id: str, sample: int) -> str:
    return f"{task_id}#{sample}"


@dataclass
class BuildStats:
    episodes: int = 0
    used: int = 0
    skipped_failed: int = 0
    skipped_error: int = 0
    skipped_empty: int = 0
    windows: int = 0
    turns: int = 0
    invalid_turns: int = 0
    truncated: int = 0
    over_budget: int = 0  # target turns longer than the generation budget (``reserve``)
    reserve: int = 0
    reason_tokens: int = 0
    act_tokens: int = 0
    tokens: int = 0
    # the context policy, per target turn (as the harness records per step)
    obs_visible: int = 0  # turns whose latest observation is in their context
    obs_truncated: int = 0  # ... shortened to fit
    elided_turns: int = 0  # turns whose context elides older observations
    dropped_turns: int = 0  # turns whose context drops the oldest turns

    def context_summary(self) -> str:
        n = max(1, self.turns)
        return (f"context: latest observation visible in {self.obs_visible / n:.1%} of turns "
                f"(shortened in {self.obs_truncated}); older observations elided in {self.elided_turns}, "
                f"oldest turns dropped in {self.dropped_turns} of {self.turns} turns")

    def summary(self) -> str:
        return (f"{self.used}/{self.episodes} episodes -> {self.windows} sequences, {self.turns} turns "
                f"({self.reason_tokens} REASON + {self.act_tokens} ACT target tokens of {self.tokens}); "
                f"skipped {self.skipped_failed} failed, {self.skipped_error} error, {self.skipped_empty} empty; "
                f"{self.truncated} truncated, {self.invalid_turns} invalid turns as context only"
                + (f"; {self.over_budget} turns longer than the {self.reserve}-token budget" if self.reserve else "")
                + "; " + self.context_summary())


def _ntok(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _system_len(env: str, tokenizer, chat: bool, exemplars: Sequence[str]) -> int:
    """Chars of the rendered system message (with its end-of-turn), the start of the TRAJ region."""
    msgs = build_messages(env, "x", (), exemplars)[:1]
    return len(render(msgs, tokenizer, chat, add_generation_prompt=False).text)


def episode_examples(ep: Episode, tokenizer, seq_len: int = 512, chat: bool = True, rule: str | None = None,
                     exemplars: Sequence[str] = (), stats: BuildStats | None = None,
                     reserve: int = 0) -> list[Example]:
    """The training windows of one episode (see the module docstring for the policy).

    ``reserve``: the harness's generation budget (its ``max_new_tokens``): each turn's context is
    built exactly as the harness builds it, leaving that much room."""
    stats = stats if stats is not None else BuildStats()
    env, steps = ep.env, ep.steps
    contents = [format_turn(env, s.reasoning, s.action) for s in steps]
    n_content = [_ntok(tokenizer, c) for c in contents]
    if reserve:  # a student that copies such a turn at eval runs out of budget before its action
        stats.reserve = reserve
        stats.over_budget += sum(1 for s, n in zip(steps, n_content) if not s.invalid and n > reserve)
    sys_len = _system_len(env, tokenizer, chat, exemplars)
    contexts = [build_context(env, ep.prompt, steps[:k], tokenizer, chat, max_tokens=seq_len,
                              exemplars=exemplars, add_generation_prompt=True, reserve=reserve)
                for k in range(len(steps))]
    for _, ctx in contexts:
        stats.obs_visible += ctx.obs_visible
        stats.obs_truncated += ctx.obs_truncated
        stats.elided_turns += ctx.elided > 0
        stats.dropped_turns += ctx.dropped > 0
    out: list[Example] = []
    k = 0
    while k < len(steps):
        msgs, ctx = contexts[k]
        # TRAJ starts after the system prompt, or after the last turn an earlier window supervised
        traj_start = sys_len if k == 0 else ctx.turns[-1][1]
        task_end = _task_end(msgs, ctx.text, tokenizer, chat)
        text = ctx.text + contents[k]
        spans = [(k, len(ctx.text), len(text))]
        max_len = max(seq_len, ctx.tokens + n_content[k])  # an over-budget target is kept whole
        digests = {k: context_digest(msgs)}
        j = k + 1
        while j < len(steps):
            msgs_j, nxt = contexts[j]
            if not nxt.text.startswith(text) or nxt.tokens + n_content[j] > seq_len:
                break  # another elision (or a template that is not prefix-stable), or full
            text = nxt.text + contents[j]
            spans.append((j, len(nxt.text), len(text)))
            digests[j] = context_digest(msgs_j)
            j += 1
        out.append(_make_example(ep, text, spans, traj_start, task_end, tokenizer, max_len, rule, len(out), stats))
        out[-1].turn_context = digests
        k = spans[-1][0] + 1
    return out


def _task_end(msgs: Sequence[dict], text: str, tokenizer, chat: bool) -> int:
    """Char offset just after the task message (with its end-of-turn) in the rendered text."""
    head = render(msgs[:2], tokenizer, chat, add_generation_prompt=False).text
    if text.startswith(head):
        return len(head)
    i = text.find(msgs[1]["content"])
    return i + len(msgs[1]["content"]) if i >= 0 else 0


def _make_example(ep: Episode, text: str, spans, traj_start: int, task_end: int, tokenizer, seq_len: int,
                  rule: str | None, window: int, stats: BuildStats) -> Example:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    seg_spans, turn_tokens = [], []
    for turn, c0, c1 in spans:
        if ep.steps[turn].invalid:
            stats.invalid_turns += 1
            continue
        seg_spans += [_shift_span(s, c0) for s in segment(text[c0:c1], ep.env, rule)]
        t0 = next((i for i, (a, b) in enumerate(offsets) if b > a and a >= c0), len(ids))
        t1 = next((i for i, (a, b) in enumerate(offsets) if b > a and a >= c1), len(ids))
        turn_tokens.append((turn, t0, t1))
    m_reason, m_act = assign_tokens(offsets, seg_spans)
    # TRAJ: from the first token after `traj_start` (special tokens such as <|im_start|> included)
    first = next((i for i, (a, b) in enumerate(offsets) if b > a and a >= traj_start), len(ids))
    m_traj = [1 if i >= first else 0 for i in range(len(ids))]
    masks = [m_reason, m_act, m_traj]
    truncated = len(ids) > seq_len
    if truncated:
        # keep the head (system prompt + task) and the most recent tokens; drop the oldest middle
        head = next((i for i, (a, b) in enumerate(offsets) if b > a and a >= task_end), 0)
        last = (spans[-1][2] - spans[-1][1]) and (turn_tokens[-1][2] - turn_tokens[-1][1] if turn_tokens else 0)
        if head + last + 16 > seq_len:
            head = 0  # the head leaves no room for the target turn: plain left truncation
        keep = list(range(head)) + list(range(len(ids) - (seq_len - head), len(ids)))
        ids = [ids[i] for i in keep]
        masks = [[m[i] for i in keep] for m in masks]
        turn_tokens = [(t, bisect_left(keep, a), bisect_left(keep, b)) for t, a, b in turn_tokens]
        stats.truncated += 1
    for m in masks:
        if m:
            m[0] = 0  # nothing predicts the first token
    m_reason, m_act, m_traj = masks
    stats.windows += 1
    stats.turns += len(spans)
    stats.reason_tokens += sum(m_reason)
    stats.act_tokens += sum(m_act)
    stats.tokens += len(ids)
    return Example(ids, m_reason, m_act, m_traj, ep.env, ep.task_id, ep.sample, window,
                   [t for t, _, _ in spans if not ep.steps[t].invalid], turn_tokens, truncated)


def _shift_span(s, off: int):
    from dataclasses import replace

    return replace(s, start=s.start + off, end=s.end + off, body_start=s.body_start + off, body_end=s.body_end + off)


def episode_exemplars(specs: dict[str, str]) -> Callable[[Episode], tuple[str, ...]]:
    """``{env or "*": spec}`` (`agents.exemplars`) -> the exemplars of an episode's prompt."""
    from sad_eval.agents.exemplars import load_exemplars, spec_for

    loaded: dict[str, object] = {}

    def shots(ep: Episode) -> tuple[str, ...]:
        if ep.env not in loaded:
            loaded[ep.env] = load_exemplars(ep.env, spec_for(specs, ep.env))
        return loaded[ep.env].for_task(ep.task_id)

    return shots


def exemplar_digests(specs: dict[str, str], envs: Iterable[str]) -> dict[str, str]:
    """{env: digest of its exemplars} ("" for none): the prompt identity a top-k sidecar records."""
    from sad_eval.agents.exemplars import load_exemplars, spec_for

    out = {}
    for env in sorted(set(envs)):
        ex = load_exemplars(env, spec_for(specs, env))
        out[env] = ex.digest() if ex else ""
    return out


def select_episodes(episodes: Iterable[Episode], only_success: bool, stats: BuildStats) -> list[Episode]:
    keep = []
    for ep in episodes:
        stats.episodes += 1
        if ep.status != "ok":
            stats.skipped_error += 1
        elif not ep.steps:
            stats.skipped_empty += 1
        elif only_success and not ep.success:
            stats.skipped_failed += 1
        else:
            keep.append(ep)
    stats.used = len(keep)
    return keep


def build_examples(episodes: Iterable[Episode], tokenizer, seq_len: int = 512, chat: bool = True,
                   only_success: bool = True, rules: dict[str, str] | None = None,
                   exemplars: Sequence[str] | Callable[[Episode], Sequence[str]] = (),
                   reserve: int = 0) -> tuple[list[Example], BuildStats]:
    """All training windows of the usable episodes, and counts of what was used and skipped.

    ``exemplars``: the few-shot exemplars of every prompt, or a function of the episode giving its
    own (ALFWorld's are per task type; `agents.exemplars`), as the harness chose them.

    ``only_success`` skips failed episodes (a teacher's failures teach the student to fail);
    episodes with ``status == "error"`` (env/server failures) and empty episodes are always skipped.
    ``rules`` maps env -> segmentation rule name (e.g. ``{"hotpotqa": "hotpotqa-two-phase"}``).
    """
    stats = BuildStats()
    eps = select_episodes(episodes, only_success, stats)
    skipped = stats.skipped_failed + stats.skipped_error + stats.skipped_empty
    if skipped:
        warnings.warn(f"distill: skipped {stats.skipped_failed} failed, {stats.skipped_error} error and "
                      f"{stats.skipped_empty} empty episodes of {stats.episodes}", stacklevel=2)
    out = []
    for ep in eps:
        shots = exemplars(ep) if callable(exemplars) else exemplars
        out += episode_examples(ep, tokenizer, seq_len, chat, (rules or {}).get(ep.env), shots, stats, reserve)
    if stats.truncated:
        warnings.warn(f"distill: {stats.truncated} sequences did not fit in {seq_len} tokens even with only the "
                      "system prompt and task; their oldest middle was cut (raise --seq-len)", stacklevel=2)
    if stats.obs_visible < stats.turns or stats.obs_truncated:
        warnings.warn(f"distill: {stats.context_summary()} at seq_len {seq_len}: raise --seq-len", stacklevel=2)
    if stats.over_budget:
        share = stats.over_budget / max(1, stats.turns - stats.invalid_turns)
        warnings.warn(f"distill: {stats.over_budget} of the teacher's turns ({share:.0%}) are longer than the "
                      f"{reserve}-token generation budget: a student that imitates them is cut off before its "
                      "action at eval; raise the eval max_new_tokens (and --reserve)", stacklevel=2)
    return out, stats
