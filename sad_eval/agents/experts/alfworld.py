"""ALFWorld teacher: ALFWorld's handcoded expert picks the command, this module says why.

The env (built with `privileged=True`, as its spec's `teacher_env_kwargs` ask) puts the handcoded expert's next command and the goal
parameters in `info["privileged"]`. The teacher keeps a small memory of what the episode has
shown so far (where it has been, what it saw where, what it holds, which steps are done) and
writes one line of ReAct-style reasoning that is true to that memory: the goal decomposition
on the first turn, what the last observation revealed, and why the next command (where to look
and why, what to do with the object next).

Few-shot exemplars: `build_exemplars` renders teacher episodes from the train split (cached as
JSON); `react_exemplars` converts ReAct's hand-written ALFWorld prompts to the same format.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sad_eval.agents.base import EpisodeState, Turn
from sad_eval.errors import SadEvalError
from sad_eval.paths import cache_root
from sad_eval.segment import linearize

ENV = "alfworld"
EXEMPLAR_VERSION = 2  # 2: revisits and looks described as observed

# the processing step of each task type: (verb, past participle, appliance class)
PROCESS = {
    "pick_clean_then_place_in_recep": ("clean", "clean", "sinkbasin"),
    "pick_heat_then_place_in_recep": ("heat", "hot", "microwave"),
    "pick_cool_then_place_in_recep": ("cool", "cool", "fridge"),
}
# receptacles one puts things *in* (the rest: *on*)
_INSIDE = {"fridge", "drawer", "cabinet", "microwave", "safe", "box", "garbagecan", "laundryhamper",
           "bathtubbasin", "sinkbasin", "pot", "bowl", "cup", "mug"}

_SEE = re.compile(r"you see (.*?)\.?$", re.I | re.S)
_PICK = re.compile(r"^You pick up the (\S+ \d+) from the (\S+ \d+)")
_PUT = re.compile(r"^You put the (\S+ \d+) in/on the (\S+ \d+)")
_PROCESSED = re.compile(r"^You (clean|heat|cool) the (\S+ \d+) using the (\S+ \d+)")
_ROOM = re.compile(r"Looking quickly around you, you see (.*?)\.\s*(?:\n|$)")


def cls(name: str) -> str:
    """Class of an instance name: 'sinkbasin 1' -> 'sinkbasin'."""
    return name.rsplit(" ", 1)[0] if name[-1:].isdigit() else name


def prep(recep: str) -> str:
    return "in" if cls(recep) in _INSIDE else "on"


def objects_in(text: str) -> list[str] | None:
    """Objects listed after 'you see' ('a mug 1, and a fork 2'), [] for 'nothing', None if no list."""
    m = _SEE.search(text)
    if not m:
        return None
    body = m.group(1).strip()
    if body.startswith("nothing"):
        return []
    items = re.split(r",\s*(?:and\s+)?|\s+and\s+", body)
    return [re.sub(r"^(?:a|an|the|some)\s+", "", i.strip()) for i in items if i.strip()]


def _join(words: Sequence[str], conj: str = "or") -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + f" {conj} " + words[-1]


def a(word: str) -> str:
    """Indefinite article: 'an apple', 'a mug'."""
    return ("an " if word[:1] in "aeiou" else "a ") + word


def plural(word: str) -> str:
    if word.endswith("fe"):
        return word[:-2] + "ves"
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word + "s"


@dataclass
class Memory:
    """What the episode has shown so far (built from actions and observations only)."""

    room: list[str] = field(default_factory=list)  # receptacles named in the task text
    visited: list[str] = field(default_factory=list)
    contents: dict[str, list[str]] = field(default_factory=dict)  # last seen objects per receptacle
    closed: set[str] = field(default_factory=set)
    location: str = ""
    holding: str = ""
    held_from: str = ""  # where the held object was picked up
    processed: bool = False  # the held target object is clean/hot/cool
    placed: int = 0  # target objects put in/on the parent receptacle
    last_action: str = ""
    seen_steps: int = 0


class ALFWorldTeacher:
    """Scripted ReAct teacher: the handcoded expert's command plus reasoning true to the state."""

    name = "expert"

    def act(self, states: Sequence[EpisodeState]) -> list[Turn]:
        return [self._turn(s) for s in states]

    # ---------------------------------------------------------------- memory

    def _memory(self, state: EpisodeState) -> Memory:
        mem = state.memory.get("alfworld")
        if mem is None:
            mem = state.memory["alfworld"] = Memory()
            m = _ROOM.search(state.task)
            mem.room = objects_in("you see " + m.group(1)) or [] if m else []
        params = state.info.get("privileged", {}).get("task_params", {})
        for step in state.steps[mem.seen_steps:]:
            self._update(mem, step.action, step.observation, params)
        mem.seen_steps = len(state.steps)
        return mem

    @staticmethod
    def _update(mem: Memory, action: str, obs: str, params: dict[str, str]) -> None:
        mem.last_action = action
        if obs.startswith("Nothing happens"):
            return
        if action.startswith("go to "):
            mem.location = action[len("go to "):]
            if mem.location not in mem.visited:
                mem.visited.append(mem.location)
        if "is closed" in obs and mem.location:
            mem.closed.add(mem.location)
        if action.startswith("open ") or "is open" in obs:
            mem.closed.discard(mem.location)
        seen = objects_in(obs)
        if seen is not None and mem.location and not obs.startswith("You are facing"):
            mem.contents[mem.location] = seen
        if m := _PICK.match(obs):
            mem.holding, mem.held_from, mem.processed = m.group(1), m.group(2), False
            mem.contents[m.group(2)] = [o for o in mem.contents.get(m.group(2), []) if o != m.group(1)]
        elif m := _PUT.match(obs):
            if cls(m.group(1)) == params.get("object_target") and cls(m.group(2)) == params.get("parent_target"):
                mem.placed += 1
            mem.contents.setdefault(m.group(2), []).append(m.group(1))
            mem.holding, mem.held_from, mem.processed = "", "", False
        elif (m := _PROCESSED.match(obs)) and m.group(2) == mem.holding:
            mem.processed = True

    # ---------------------------------------------------------------- reasoning

    def _turn(self, state: EpisodeState) -> Turn:
        priv = state.info.get("privileged")
        if priv is None:
            raise SadEvalError("the ALFWorld expert needs the env built with privileged=True (info['privileged'])")
        mem = self._memory(state)
        p = dict(priv.get("task_params", {}))
        action = priv.get("expert_action")
        if not action:
            return Turn("I have no clear next step, so I'll look around the room again.", "look")
        parts = [self._plan(p, mem, priv)] if not state.steps else [self._reflect(p, mem, state.steps[-1])]
        parts.append(self._intent(p, mem, action, priv))
        text = " ".join(s for s in parts if s)
        return Turn(" ".join(text.split()), action)

    @staticmethod
    def _plan(p: dict[str, str], mem: Memory, priv: dict[str, Any]) -> str:
        """Goal decomposition (first turn) and where the object probably is."""
        t, obj = p.get("task_type", ""), p.get("object_target", "object")
        parent = p.get("parent_target", "")
        if t in PROCESS:
            verb, adj, tool = PROCESS[t]
            plan = (f"To put {a(adj)} {obj} {prep(parent)} the {parent}, I need to find {a(obj)} and take it, "
                    f"{verb} it with the {tool}, then put it {prep(parent)} {a(parent)}.")
        elif t == "look_at_obj_in_light":
            lamp = p.get("toggle_target", "desklamp")
            plan = (f"To look at {a(obj)} under the {lamp}, I need to find {a(obj)} and take it, "
                    f"then find {a(lamp)} and turn it on while holding the {obj}.")
        elif t == "pick_two_obj_and_place":
            plan = (f"To put two {plural(obj)} {prep(parent)} the {parent}, I need to find {a(obj)}, put it "
                    f"{prep(parent)} {a(parent)}, then find a second {obj} and put it there too.")
        else:
            plan = (f"To put {a(obj)} {prep(parent)} the {parent}, I need to find {a(obj)}, take it, "
                    f"then put it {prep(parent)} {a(parent)}.")
        likely = [c for c in priv.get("search_priors", []) if any(cls(r) == c for r in mem.room)]
        if likely:
            plan += f" {a(obj).capitalize()} is most likely in or on {a(_join(likely[:5]))}."
        return plan

    @staticmethod
    def _reflect(p: dict[str, str], mem: Memory, last) -> str:
        """What the last observation showed, in terms of the goal."""
        obs, obj = last.observation.strip(), p.get("object_target", "")
        if obs.startswith("Nothing happens"):
            return f"'{last.action}' did nothing."
        if m := _PICK.match(obs):
            return f"I'm holding the {m.group(1)} now."
        if m := _PROCESSED.match(obs):
            return f"The {m.group(2)} is {PROCESS.get(p.get('task_type', ''), ('', m.group(1), ''))[1]} now."
        if m := _PUT.match(obs):
            if p.get("task_type") == "pick_two_obj_and_place" and mem.placed == 1:
                return f"One {obj} is {prep(m.group(2))} the {m.group(2)}; I still need a second one."
            return f"The {m.group(1)} is {prep(m.group(2))} the {m.group(2)}."
        if obs.startswith("You turn on"):
            return "The lamp is on."
        if obs.startswith(("You close", "You are facing", "You are in the middle")):
            return ""  # nothing new about the goal
        loc = mem.location
        if loc and loc in mem.closed and last.action.startswith("go to"):
            return f"The {loc} is closed."
        seen = objects_in(obs)
        if seen is None or not loc:
            return ""
        searching = not mem.holding or cls(mem.holding) != obj
        want = obj if searching else p.get("toggle_target", "") if p.get("task_type") == "look_at_obj_in_light" else ""
        if not seen:
            return f"The {loc} is empty." if searching else ""
        hits = [o for o in seen if cls(o) == want]
        if hits:
            return f"I see {_join([a(h) for h in hits], 'and')} {prep(loc)} the {loc}."
        if searching:
            return f"There is no {obj} {prep(loc)} the {loc}."
        return ""

    def _intent(self, p: dict[str, str], mem: Memory, action: str, priv: dict[str, Any]) -> str:
        """Why the next command."""
        t, obj = p.get("task_type", ""), p.get("object_target", "")
        parent = p.get("parent_target", "")
        holding_target = bool(mem.holding) and cls(mem.holding) == obj
        words = action.split()
        verb = words[0] if words else ""
        if action == "look":  # no reason is claimed for a mid-episode look: none is observable
            return "First I'll look around." if not mem.seen_steps else "I'll look around."
        if action.startswith("go to "):
            return self._goto(p, mem, action[len("go to "):], holding_target, priv)
        if verb == "open":
            target = action[len("open "):]
            if holding_target and cls(target) == parent:
                return f"I'll open the {target} so I can put the {mem.holding} inside."
            return f"I'll open the {target} to see what is inside."
        if verb == "close":
            return f"I'll close the {action[len('close '):]} and move on."
        if verb == "take":
            o = " ".join(words[1:3])
            if cls(o) != obj:  # not the goal object: claim no purpose for it
                return f"I'll take the {o}."
            return f"I'll take the {o}, {self._after_take(p, mem)}."
        if verb in ("clean", "heat", "cool") and holding_target:
            tool = " ".join(words[-2:])
            return f"I'll {verb} the {mem.holding} with the {tool}, then put it {prep(parent)} {a(parent)}."
        if verb == "put":
            o, r = " ".join(words[1:3]), " ".join(words[-2:])
            if cls(o) != obj or cls(r) != parent:
                back = "back " if r == mem.held_from else ""
                return f"I'll put the {o} {back}{prep(r)} the {r}."
            if t == "pick_two_obj_and_place" and mem.placed == 0:
                return f"I'll put the {o} {prep(r)} the {r}; that is the first of two."
            return f"I'll put the {o} {prep(r)} the {r}, which completes the task."
        if verb == "use":
            return f"I'll turn on the {action[4:]} to look at the {mem.holding or obj} in the light."
        if verb == "examine":
            return f"I'll examine the {action[len('examine '):]} more closely."
        if verb == "inventory":
            return "I'll check what I am carrying."
        return f"I'll try '{action}'."

    @staticmethod
    def _after_take(p: dict[str, str], mem: Memory) -> str:
        t, parent = p.get("task_type", ""), p.get("parent_target", "")
        if t in PROCESS:
            verb, _, tool = PROCESS[t]
            return f"then {verb} it with the {tool} and put it {prep(parent)} {a(parent)}"
        if t == "look_at_obj_in_light":
            lamp = p.get("toggle_target", "desklamp")
            known = [r for r, objs in mem.contents.items() if any(cls(o) == lamp for o in objs)]
            known.sort(key=lambda r: r != mem.location)  # one right here comes first
            if known:
                return f"then go to the {lamp} I saw {prep(known[0])} the {known[0]} and turn it on"
            return f"then find {a(lamp)} and turn it on"
        if t == "pick_two_obj_and_place" and mem.placed:
            return f"the second one, and put it {prep(parent)} {a(parent)} with the first"
        return f"then put it {prep(parent)} {a(parent)}"

    def _goto(self, p: dict[str, str], mem: Memory, dest: str, holding_target: bool, priv: dict[str, Any]) -> str:
        """Why go to ``dest``; a place already visited is said to be a revisit, and one already seen
        without what is wanted is said to be so (the handcoded expert does recheck places)."""
        t, obj, parent = p.get("task_type", ""), p.get("object_target", ""), p.get("parent_target", "")
        dcls = cls(dest)
        again = " again" if dest in mem.visited else ""
        if mem.holding and not holding_target:
            if dest == mem.held_from:
                return f"I'm holding the {mem.holding}, which I don't need; I'll go back to the {dest} to put it down."
            return f"I'm holding the {mem.holding}, which I don't need; I'll go to the {dest}{again}."
        if holding_target:
            if t in PROCESS and not mem.processed:
                verb, _, tool = PROCESS[t]
                if dcls == tool or dcls == "bathtubbasin":
                    return f"Next I need to {verb} the {mem.holding}, so I'll go to the {dest}{again}."
            if t == "look_at_obj_in_light":
                lamp = p.get("toggle_target", "desklamp")
                if any(cls(o) == lamp for o in mem.contents.get(dest, [])):
                    return f"I saw {a(lamp)} {prep(dest)} the {dest} earlier, so I'll take the {mem.holding} back there."
                if dest in mem.contents:
                    return (f"Now I need {a(lamp)}. There was none {prep(dest)} the {dest} when I looked before, "
                            f"but I'll check it again.")
                return f"Now I need {a(lamp)}; I'll look for one at the {dest}{again}."
            # say the processing is done unless the last observation just said so
            just_done = mem.last_action.split(" ", 1)[0] in ("clean", "heat", "cool")
            done = f"The {mem.holding} is {PROCESS[t][1]}; now" if t in PROCESS and not just_done else "Now"
            if dcls == parent:
                back = "back " if again else ""
                return f"{done} I'll take it {back}to the {dest} to put it there."
            return f"{done} I need {a(parent)} for the {mem.holding}; I'll go to the {dest}{again}."
        # searching for the object
        seen_here = [o for o in mem.contents.get(dest, []) if cls(o) == obj]
        want = f"another {obj}" if t == "pick_two_obj_and_place" and mem.placed else a(obj)
        if seen_here:
            seen = _join([a(o) for o in seen_here], "and")
            return f"I saw {seen} {prep(dest)} the {dest} earlier, so I'll go back there."
        if dest in mem.contents:
            return (f"I haven't found {want} yet. There was no {obj} {prep(dest)} the {dest} when I looked before, "
                    f"but I'll check it again.")
        priors = priv.get("search_priors", [])
        if dcls in priors:
            return f"I need to find {want}; {a(obj)} is often {prep(dest)} {a(dcls)}, so I'll check the {dest}{again}."
        left = [r for r in mem.room if cls(r) in priors and r not in mem.visited]
        if mem.visited and not left and priors:
            return f"I have checked the likely places for {want}; I'll try the {dest}{again}."
        return f"I'm looking for {want}; I'll check the {dest}{again}."


def make_expert(**kwargs) -> ALFWorldTeacher:
    """The ALFWorld scripted teacher (`--agent expert`)."""
    if kwargs:
        raise SadEvalError(f"the ALFWorld expert takes no options (got {', '.join(sorted(kwargs))})")
    return ALFWorldTeacher()


# ---------------------------------------------------------------- exemplars

def render_exemplar(task: str, steps: Sequence[Any]) -> str:
    """A plain transcript: the task, then `Reasoning:`/`Action:`/`Observation:` lines."""
    return task.strip() + "\n" + linearize(steps, ENV)


def exemplar_cache() -> Path:
    return cache_root() / "exemplars" / "alfworld.json"


def build_exemplars(data_root: str | Path | None = None, per_type: int = 2,
                    max_steps: int = 30) -> dict[str, list[str]]:
    """Few-shot exemplars per task type: the teacher's first `per_type` won episodes (shorter
    than `max_steps`) on the train split, in task order. Cached; rebuilt if it holds too few."""
    path = exemplar_cache()
    if path.is_file():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):  # torn by a kill under an older version: rebuild it
            cached = {}
        if isinstance(cached, dict) and cached.get("version") == EXEMPLAR_VERSION and cached.get("per_type", 0) >= per_type \
                and cached.get("max_steps") == max_steps:
            return {t: ex[:per_type] for t, ex in cached["exemplars"].items()}
    from sad_eval.envs import make_env
    from sad_eval.envs.alfworld import TASK_TYPES, task_type_of
    from sad_eval.agents.episode import run_episode

    env = make_env(ENV, split="train", data_root=data_root, max_steps=max_steps, privileged=True)
    teacher = make_expert()
    out: dict[str, list[str]] = {t: [] for t in TASK_TYPES}
    try:
        for tid in env.unwrapped.task_ids:
            t = task_type_of(tid)
            if len(out[t]) >= per_type:
                continue
            ep = run_episode(env, teacher, ENV, tid, split="train")
            if ep.success:
                out[t].append(render_exemplar(ep.prompt, ep.steps))
            if all(len(v) >= per_type for v in out.values()):
                break
    finally:
        env.close()
    from sad_eval.statefiles import write_json_atomic

    write_json_atomic(path, {"version": EXEMPLAR_VERSION, "per_type": per_type, "max_steps": max_steps,
                             "exemplars": out}, indent=1)
    return out


# ReAct's prompt keys name task types by a short word
REACT_PREFIX = {
    "pick_and_place_simple": "put",
    "pick_clean_then_place_in_recep": "clean",
    "pick_heat_then_place_in_recep": "heat",
    "pick_cool_then_place_in_recep": "cool",
    "pick_two_obj_and_place": "puttwo",
    "look_at_obj_in_light": "examine",
}


def react_exemplars(task_type: str, data_root: str | Path | None = None) -> list[str]:
    """ReAct's ALFWorld few-shot prompts (`react/alfworld_3prompts.json`) for one task type, in
    this harness's format: `> think: X` becomes the reasoning of the next command; a command
    without a thought gets its plain paraphrase ("I'll open the fridge 1.")."""
    from sad_eval.data import require

    if task_type not in REACT_PREFIX:
        raise SadEvalError(f"unknown ALFWorld task type {task_type!r}")
    prompts = json.loads(require("react/alfworld_3prompts.json", Path(data_root) if data_root else None).read_text())
    keys = sorted(k for k in prompts if k.startswith(f"react_{REACT_PREFIX[task_type]}_"))
    return [_convert_react(prompts[k]) for k in keys]


def paraphrase(action: str) -> str:
    """A command said as an intention: the reasoning of a ReAct step that had no thought."""
    words = action.split()
    verb = words[0] if words else ""
    if action.startswith("go to "):
        return f"I'll go to the {action[6:]}."
    if verb in ("open", "close", "examine", "use") and len(words) > 1:
        return f"I'll {'turn on' if verb == 'use' else verb} the {' '.join(words[1:])}."
    if verb == "take" and len(words) >= 3:
        return f"I'll take the {' '.join(words[1:3])}."
    if verb == "put" and len(words) >= 6:
        return f"I'll put the {' '.join(words[1:3])} {prep(' '.join(words[-2:]))} the {' '.join(words[-2:])}."
    if verb in ("clean", "heat", "cool") and len(words) >= 5:
        return f"I'll {verb} the {' '.join(words[1:3])} with the {' '.join(words[-2:])}."
    return f"I'll {action}."


def _convert_react(text: str) -> str:
    lines = text.strip().split("\n")
    i = next((n for n, line in enumerate(lines) if line.startswith(">")), len(lines))
    task, steps, thought = "\n".join(lines[:i]), [], []
    while i < len(lines):
        cmd = lines[i][1:].strip()
        obs = []
        i += 1
        while i < len(lines) and not lines[i].startswith(">"):
            obs.append(lines[i])
            i += 1
        if cmd.startswith("think:"):
            thought.append(cmd[len("think:"):].strip())  # its observation is just "OK."
            continue
        steps.append({"reasoning": " ".join(thought) or paraphrase(cmd), "action": cmd,
                      "observation": "\n".join(obs).strip()})
        thought = []
    return render_exemplar(task, steps)


# ---------------------------------------------------------------- exemplars, as the env's spec names them

def teacher_exemplars(k: int, data_root: str | Path | None = None) -> dict[str, list[str]]:
    """`--exemplars K`: K won teacher episodes per task type (a prompt carries its own type's)."""
    by_type = build_exemplars(data_root, per_type=k)
    short = [t for t, ex in by_type.items() if len(ex) < k]
    if short:
        raise SadEvalError(f"--exemplars {k}: the ALFWorld teacher won fewer than {k} train episodes of "
                           f"type {', '.join(short)}")
    return {t: list(ex) for t, ex in by_type.items()}


def react_prompt_exemplars(prompts: dict[str, str], key: str) -> dict[str, list[str]] | list[str]:
    """`--exemplars react[:KEY]`: ReAct's ALFWorld prompts converted; without a key, per task type
    react_{v}_1 then react_{v}_0, as ReAct (alfworld.ipynb) prompts."""
    if key:
        return [_convert_react(prompts[key])]
    return {t: [_convert_react(prompts[f"react_{v}_{i}"]) for i in (1, 0)] for t, v in REACT_PREFIX.items()}
