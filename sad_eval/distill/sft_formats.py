"""SFT conversation formats in and out: ChatML-style ``messages`` and ShareGPT ``conversations``.

Export: one conversation per episode, built by the one prompt builder (`build_messages`), so the
messages are exactly what the student is shown and asked to write: the system instruction, the
task, then per turn the assistant's ``Reasoning:``/``Action:`` text and the env's ``Observation:``.
The final observation (after the last action) is dropped: no turn follows it. Every record has the
same columns whatever the env (``meta``, which differs per env, is kept as a JSON string), so files
of mixed envs load with HF ``datasets`` as one table, and the ``messages`` column is TRL's
conversational SFT format.

Import: AgentGym (``AgentTraj``: ``item_id``, ``conversations`` of ``from``/``value``/``loss``) and
ETO-style (``id``, ``conversations`` without ``loss``) ReAct trajectories as teacher episodes. The
instruction exchange before the task (the prompt and the model's ``OK``; in AgentGym the messages
with ``loss: false``) is dropped, since our system prompt replaces it; each assistant message is
parsed with the env's rules (``Thought:`` is a REASON marker as ``Reasoning:`` is), the next human
message is its observation. An episode is kept only if it has REASON and ACT spans and its token
masks do not overlap (the checks `sad-eval segment --check` makes). The formats were read from the
AgentGym (WooooDyy/AgentGym) and ETO (Yifan-Song793/ETO) data descriptions, not copied.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from sad_eval.agents.prompts import build_messages
from sad_eval.errors import SadEvalError
from sad_eval.segment import linearize, parse_turn, require_reason_and_act, segment, token_masks, validate_masks
from sad_eval.trajectory import Episode, Step

FORMATS = ("chatml", "sharegpt")
IMPORT_FORMATS = ("agentgym", "eto")
SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}


def episode_messages(ep: Episode, exemplars: Sequence[str] = ()) -> list[dict[str, str]]:
    """The whole conversation of an episode as the student sees it, ending with its last turn."""
    msgs = build_messages(ep.env, ep.prompt, ep.steps, exemplars)
    return msgs[:-1] if ep.steps and msgs[-1]["role"] == "user" else msgs


def export_record(ep: Episode, fmt: str, exemplars: Sequence[str] = ()) -> dict[str, Any]:
    msgs = episode_messages(ep, exemplars)
    ident = {"env": ep.env, "split": ep.split, "task_id": str(ep.task_id), "sample": int(ep.sample),
             "agent": ep.agent, "success": bool(ep.success), "score": float(ep.score),
             "meta": json.dumps(ep.meta, ensure_ascii=False, sort_keys=True)}
    if fmt == "chatml":
        return {"messages": msgs, **ident}
    if fmt == "sharegpt":
        return {"conversations": [{"from": SHAREGPT_ROLES[m["role"]], "value": m["content"]} for m in msgs], **ident}
    raise SadEvalError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


@dataclass
class ExportStats:
    episodes: int = 0
    written: int = 0
    skipped_failed: int = 0
    skipped_error: int = 0
    skipped_empty: int = 0
    envs: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        envs = ", ".join(f"{k} {v}" for k, v in sorted(self.envs.items()))
        return (f"{self.written}/{self.episodes} episodes ({envs}); skipped {self.skipped_failed} failed, "
                f"{self.skipped_error} errored, {self.skipped_empty} without turns")


def export_episodes(episodes: Iterable[Episode], fmt: str, only_success: bool = True) -> tuple[list[dict], ExportStats]:
    if fmt not in FORMATS:
        raise SadEvalError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    from sad_eval.distill.examples import BuildStats, select_episodes

    stats, out, picked = ExportStats(), [], BuildStats()
    kept = select_episodes(episodes, only_success, picked)  # the episodes distill would train on
    stats.episodes, stats.skipped_error = picked.episodes, picked.skipped_error
    stats.skipped_empty, stats.skipped_failed = picked.skipped_empty, picked.skipped_failed
    for ep in kept:
        out.append(export_record(ep, fmt))
        stats.written += 1
        stats.envs[ep.env] = stats.envs.get(ep.env, 0) + 1
    return out, stats


# ---------------------------------------------------------------- import

ROLE_OF = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
_MARKER_NEWLINE = re.compile(r"^(Thought|Reasoning|Action|Answer):[ \t]*\n+", re.M)
_OBS_PREFIX = re.compile(r"^\s*Observation:\s*")
_ACK = re.compile(r"^\s*(ok|okay|sure)[.!]?\s*$", re.I)


def _messages(record: dict) -> list[dict]:
    conv = record.get("conversations", record.get("messages"))
    if not isinstance(conv, list) or not conv:
        raise ValueError("no conversations")
    out = []
    for m in conv:
        role = ROLE_OF.get(str(m.get("from", m.get("role", ""))).lower())
        text = m.get("value", m.get("content"))
        if role is None or not isinstance(text, str):
            raise ValueError(f"unknown message {str(m)[:80]}")
        out.append({"role": role, "content": text, "loss": m.get("loss")})
    return out


def _trajectory_start(msgs: list[dict]) -> int:
    """Index of the task (the user message the first trajectory turn answers)."""
    supervised = [i for i, m in enumerate(msgs) if m["role"] == "assistant" and m["loss"] is True]
    if supervised:  # AgentGym: the instruction exchange has loss false, the trajectory's turns true
        i = supervised[0] - 1
    else:  # ETO: skip the instruction and the model's acknowledgement ("OK")
        acks = [i for i, m in enumerate(msgs) if m["role"] == "assistant" and _ACK.match(m["content"])]
        i = acks[-1] + 1 if acks else next(k for k, m in enumerate(msgs) if m["role"] == "user")
    while i >= 0 and msgs[i]["role"] != "user":
        i -= 1
    if i < 0:
        raise ValueError("no task message before the first turn")
    return i


def _env_of(record: dict, env: str | None) -> str:
    if env:
        return env
    ident = str(record.get("item_id", record.get("id", "")))
    from sad_eval.envs.spec import env_names

    for name in env_names():  # AgentGym's item ids start with the env's name ("webshop_12")
        if ident.lower().startswith(name):
            return name
    raise ValueError(f"cannot tell the env of {ident!r}: pass --env")


def conversation_episode(record: dict, env: str | None = None, index: int = 0, source: str = "") -> Episode:
    """One AgentGym/ETO record -> an episode (steps parsed with the env's rules; raw text kept)."""
    env = _env_of(record, env)
    msgs = [m for m in _messages(record) if m["role"] != "system"]
    start = _trajectory_start(msgs)
    task = _OBS_PREFIX.sub("", msgs[start]["content"]).strip()
    steps: list[Step] = []
    rest = msgs[start + 1:]
    for k, m in enumerate(rest):
        if m["role"] != "assistant":
            continue
        text = _MARKER_NEWLINE.sub(lambda mm: mm.group(1) + ": ", m["content"].strip()) + "\n"
        p = parse_turn(env, text)
        nxt = rest[k + 1] if k + 1 < len(rest) and rest[k + 1]["role"] == "user" else None
        obs = _OBS_PREFIX.sub("", nxt["content"]).strip() if nxt else ""
        steps.append(Step(reasoning=p.reasoning, action=p.action, observation=obs, invalid=not p.valid, raw=m["content"]))
    if not steps:
        raise ValueError("no assistant turns after the task")
    success = record.get("success")
    if success is None:
        reward = record.get("reward")
        success = True if reward is None else float(reward) > 0  # trajectory sets keep successful runs
    ident = record.get("item_id", record.get("id", f"conv-{index}"))
    return Episode(env=env, split="train", task_id=str(ident), agent=f"import:{source or 'conversations'}",
                   success=bool(success), score=float(record.get("reward", 1.0 if success else 0.0) or 0.0),
                   steps=steps, prompt=task, meta={"imported_from": source} if source else {})


@dataclass
class ImportStats:
    records: int = 0
    kept: int = 0
    unreadable: int = 0
    no_spans: int = 0
    overlap: int = 0
    first_problem: str = ""

    def summary(self) -> str:
        return (f"{self.kept}/{self.records} conversations kept; skipped {self.unreadable} unreadable, "
                f"{self.no_spans} without REASON/ACT spans, {self.overlap} with overlapping masks")


def import_conversations(records: Iterable[dict], env: str | None, tokenizer, source: str = "",
                         rule: str | None = None) -> tuple[list[Episode], ImportStats]:
    stats, out = ImportStats(), []
    for i, rec in enumerate(records):
        stats.records += 1
        try:
            ep = conversation_episode(rec, env, i, source)
        except (ValueError, TypeError, KeyError) as e:
            stats.unreadable += 1
            stats.first_problem = stats.first_problem or f"record {i + 1}: {e}"
            continue
        text = linearize(ep.steps, ep.env)
        spans = segment(text, ep.env, rule)
        try:
            require_reason_and_act(spans, f"record {i + 1} ({ep.task_id})")
        except SadEvalError as e:
            stats.no_spans += 1
            stats.first_problem = stats.first_problem or str(e)
            continue
        if validate_masks(token_masks(text, spans, tokenizer), spans, text)["overlap"]:
            stats.overlap += 1
            stats.first_problem = stats.first_problem or f"record {i + 1}: REASON and ACT masks overlap"
            continue
        out.append(ep)
        stats.kept += 1
    return out, stats


def read_records(path) -> list[dict]:
    """A JSON list, or JSON lines."""
    from pathlib import Path

    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        pass
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise SadEvalError(f"{path}:{n}: not JSON ({e.msg})") from None
    return out
