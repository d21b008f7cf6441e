"""Evaluation metrics (SAD paper, Appendix C). One definition each; every table calls these.

Choices where the paper is silent (docs/metrics.md):
- Tokens for ARL and CoT match come from a fixed word tokenizer (``\\w+|[^\\w\\s]``, lower-cased)
  so numbers compare across students with different vocabularies; a HF tokenizer may be passed.
- Only the reasoning text itself counts, not the ``Reasoning:`` marker.
- Errored episodes (env/server failures, ``status == "error"``) are not task failures: they are
  left out of every metric and counted in ``errored``.
- CoT match pairs episodes by (env, task_id); a teacher with several samples per task is
  represented by its first sample. Unpaired student episodes are left out and ``cot_pairs``
  says how many were paired.
"""

from __future__ import annotations

import re
from collections import Counter
from statistics import mean
from typing import Callable, Iterable, Sequence

from sad_eval.envs.spec import EnvMetric, env_specs, find_spec
from sad_eval.trajectory import Episode

_WORD = re.compile(r"\w+|[^\w\s]")

Tokenize = Callable[[str], list[str]]


def word_tokens(text: str) -> list[str]:
    """The default metric tokenizer: words and single punctuation marks, lower-cased."""
    return _WORD.findall(text.lower())


def hf_tokenize(tokenizer) -> Tokenize:
    """Use a Hugging Face tokenizer's token strings instead of words."""
    return lambda text: tokenizer.tokenize(text)


def _ok(episodes: Iterable[Episode]) -> list[Episode]:
    return [e for e in episodes if e.status != "error"]


def reasoning_tokens(episode: Episode, tokenize: Tokenize = word_tokens) -> list[str]:
    """All reasoning tokens of an episode, turn after turn (the REASON spans' bodies)."""
    return [t for s in episode.steps for t in tokenize(s.reasoning or "")]


def task_success_rate(episodes: Sequence[Episode]) -> float:
    """TSR = successful episodes / episodes, in percent."""
    eps = _ok(episodes)
    return 100.0 * sum(e.success for e in eps) / len(eps) if eps else float("nan")


def average_reasoning_length(episodes: Sequence[Episode], tokenize: Tokenize = word_tokens) -> float:
    """ARL = mean over episodes of the number of reasoning tokens in the episode."""
    eps = _ok(episodes)
    return mean(len(reasoning_tokens(e, tokenize)) for e in eps) if eps else float("nan")


def cot_overlap(student: Sequence[str], teacher: Sequence[str]) -> float:
    """|R_s ∩ R_t| / |R_t| with multiset (clipped-count) intersection; 0 when the teacher has none."""
    if not teacher:
        return 0.0
    inter = Counter(student) & Counter(teacher)
    return sum(inter.values()) / len(teacher)


def cot_match_rate(students: Sequence[Episode], teachers: Sequence[Episode],
                   tokenize: Tokenize = word_tokens) -> tuple[float, int]:
    """CoT match rate (percent) = mean over paired episodes of ``cot_overlap``; returns (rate, pairs)."""
    first: dict[tuple[str, str], Episode] = {}
    for t in sorted(_ok(teachers), key=lambda e: e.sample):
        first.setdefault((t.env, t.task_id), t)
    scores = []
    for s in _ok(students):
        t = first.get((s.env, s.task_id))
        if t is not None:
            scores.append(cot_overlap(reasoning_tokens(s, tokenize), reasoning_tokens(t, tokenize)))
    return (100.0 * mean(scores) if scores else float("nan")), len(scores)


def latency_steps(episodes: Sequence[Episode]) -> float:
    """Mean number of agent turns (one reasoning + action generation each) per episode."""
    eps = _ok(episodes)
    return mean(len(e.steps) for e in eps) if eps else float("nan")


def _episode_seconds(e: Episode) -> float:
    return e.wall_s or sum(s.latency_s for s in e.steps)


def latency_seconds(episodes: Sequence[Episode]) -> float:
    """Mean wall-clock seconds per episode (agent and env time)."""
    eps = _ok(episodes)
    return mean(_episode_seconds(e) for e in eps) if eps else float("nan")


def latency_seconds_per_step(episodes: Sequence[Episode]) -> float:
    """Total wall-clock seconds / total turns."""
    eps = _ok(episodes)
    steps = sum(len(e.steps) for e in eps)
    return sum(_episode_seconds(e) for e in eps) / steps if steps else float("nan")


def invalid_action_rate(episodes: Sequence[Episode]) -> float:
    """Percent of turns whose output had no parsable action."""
    steps = [s for e in _ok(episodes) for s in e.steps]
    return 100.0 * sum(s.invalid for s in steps) / len(steps) if steps else float("nan")


def step_rejected(env: str, step) -> bool | None:
    """Whether the env rejected this step's action: its typed flag, else (old files) the text rule;
    None when neither is known (an old file of an env without a text rule)."""
    if step.rejected is not None:
        return bool(step.rejected)
    # files written before steps recorded the env's flag: how the env words a rejection
    # (`EnvSpec.legacy_rejection_prefix`), the rule this metric used before
    spec = find_spec(env)
    prefix = spec.legacy_rejection_prefix if spec is not None else ""
    return step.observation.strip().startswith(prefix) if prefix else None


def rejected_action_rate(episodes: Sequence[Episode]) -> float:
    """Percent of parsed actions (turns that are not invalid) that the env rejected: the action was
    well-formed but not possible there, a sign of an agent not grounded in its observations. The
    env says so in `info["rejected"]` (recorded as `Step.rejected`)."""
    refused = [r for e in _ok(episodes) for s in e.steps if not s.invalid
               for r in (step_rejected(e.env, s),) if r is not None]
    return 100.0 * sum(refused) / len(refused) if refused else float("nan")


def invalid_turn_kinds(episodes: Sequence[Episode], max_new_tokens: int) -> dict[str, float]:
    """The invalid turns split by how they failed, each in percent of all turns:
    ``runaway_rate`` = generation used the whole ``max_new_tokens`` budget (a loop that never reached
    the action line); ``no_action_rate`` = the output ended early without one (a format error)."""
    steps = [s for e in _ok(episodes) for s in e.steps]
    if not steps:
        return {"runaway_rate": float("nan"), "no_action_rate": float("nan")}
    invalid = [s for s in steps if s.invalid]
    runaway = sum(1 for s in invalid if (s.tokens or 0) >= max_new_tokens)
    return {"runaway_rate": 100.0 * runaway / len(steps),
            "no_action_rate": 100.0 * (len(invalid) - runaway) / len(steps)}


def mean_score(episodes: Sequence[Episode]) -> float:
    """Mean env score (WebShop: reward in [0, 1] scaled to 0-100, as WebShop reports it)."""
    eps = _ok(episodes)
    return 100.0 * mean(e.score for e in eps) if eps else float("nan")


def mean_meta(episodes: Sequence[Episode], key: str) -> float:
    """Mean of a per-episode value in ``meta`` (HotPotQA: ``em``, ``f1``), in percent."""
    vals = [float(e.meta[key]) for e in _ok(episodes) if key in e.meta]
    return 100.0 * mean(vals) if vals else float("nan")


def summarize(episodes: Sequence[Episode], teacher: Sequence[Episode] | None = None,
              tokenize: Tokenize = word_tokens, max_new_tokens: int | None = None) -> dict[str, float]:
    """All metrics for one run (one env): the keys of `sad-eval metrics --format json`. With the
    decoding budget ``max_new_tokens``, also the invalid-turn split (``invalid_turn_kinds``)."""
    ok = _ok(episodes)
    out: dict[str, float] = {
        "episodes": len(ok),
        "errored": len(episodes) - len(ok),
        "tsr": task_success_rate(ok),
        "arl": average_reasoning_length(ok, tokenize),
        "cot_match": float("nan"),
        "cot_pairs": 0,
        "latency_steps": latency_steps(ok),
        "latency_s": latency_seconds(ok),
        "latency_s_per_step": latency_seconds_per_step(ok),
        "invalid_rate": invalid_action_rate(ok),
        "rejected_rate": rejected_action_rate(ok),
    }
    if max_new_tokens:
        out.update(invalid_turn_kinds(ok, max_new_tokens))
    if teacher is not None:
        out["cot_match"], out["cot_pairs"] = cot_match_rate(ok, teacher, tokenize)
    out.update(env_metrics(ok))
    return out


def env_metric(episodes: Sequence[Episode], metric: EnvMetric) -> float:
    """One env's own metric (`EnvMetric`): mean score or mean ``meta`` value, in percent."""
    if metric.source == "score":
        return mean_score(episodes)
    if metric.source.startswith("meta:"):
        return mean_meta(episodes, metric.source[len("meta:"):])
    raise ValueError(f"unknown metric source {metric.source!r} (expected score or meta:KEY)")


def env_metrics(episodes: Sequence[Episode]) -> dict[str, float]:
    """The metrics each env present declares beyond the shared ones (`EnvSpec.metrics`: WebShop's
    score, HotPotQA's EM/F1), over that env's episodes."""
    out: dict[str, float] = {}
    for spec in env_specs():
        mine = [e for e in episodes if e.env == spec.name]
        if mine:
            for metric in spec.metrics:
                out[metric.key] = env_metric(mine, metric)
    return out
