"""ALFWorld (TextWorld/PDDL household games) as a Gymnasium text env: `sad_eval/ALFWorld-v0`.

Engine: `textworld[pddl]==1.7.0` plus `alfworld==0.3.5` installed without its dependencies. Its
text env needs nothing beyond textworld's own deps (tqdm, termcolor, numpy); but
`alfworld/agents/environment/__init__.py` also imports the THOR env (ai2thor, cv2), so the text
env module is loaded by file path and only its wrappers are used: `AlfredDemangler` (readable
names like "mug 1"), `AlfredInfos`, and `AlfredExpert` (the handcoded expert's next command).

Observations follow ReAct's cleanup (Yao et al. 2023, alfworld notebook, reimplemented): the
`-= Welcome to TextWorld, ALFRED! =-` banner is dropped from the first observation and the
"You arrive at loc N." prefix from arrivals. Invalid commands get the game's own
"Nothing happens.".
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pickle
import random
import re
import sys
import warnings
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, Sequence

from sad_eval.data import require
from sad_eval.envs.alfworld_spec import SPLIT_FOLDERS as ALFWORLD_SPLITS
from sad_eval.envs.base import EnvError, TextEnv
from sad_eval.errors import SadEvalError
from sad_eval.paths import cache_root

GAMES_DIR = "alfworld/json_2.1.1"
GAME_FILE = "game.tw-pddl"
TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)

REJECTED = "Nothing happens."  # the game's answer to a command it cannot carry out
_BANNER = re.compile(r"^\s*-=.*=-\s*$")
_ARRIVE = re.compile(r"^You arrive at loc \d+\.\s*")
_TASK = re.compile(r"Your task is to:\s*(.+?)\s*$", re.S)
_UNSOLVABLE = re.compile(rb'"solvable"\s*:\s*false')
try:
    _FD_VERSION = importlib.metadata.version("fast-downward-textworld")
except importlib.metadata.PackageNotFoundError:
    _FD_VERSION = "unknown"


# ---------------------------------------------------------------- tasks

def _split_dir(split: str, data_root: str | Path | None) -> Path:
    if split not in ALFWORLD_SPLITS:
        raise SadEvalError(f"unknown ALFWorld split {split!r}; choose one of {', '.join(ALFWORLD_SPLITS)}")
    return require(f"{GAMES_DIR}/{ALFWORLD_SPLITS[split]}", Path(data_root) if data_root else None)


def _tail(path: Path, n: int = 256) -> bytes:
    # `solvable` is the game JSON's last key: no need to parse ~85 KB per game
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - n))
        return f.read()


@functools.lru_cache(maxsize=16)
def _list_tasks(split_dir: Path) -> tuple[str, ...]:
    ids = []
    for game in split_dir.glob(f"*/*/{GAME_FILE}"):
        trial = game.parent
        # Upstream skips movable/sliced variants and games its expert marked unsolvable.
        if "movable" in str(trial) or "Sliced" in str(trial) or not (trial / "traj_data.json").is_file():
            continue
        if _UNSOLVABLE.search(_tail(game)):
            continue
        ids.append(f"{split_dir.name}/{trial.parent.name}/{trial.name}")
    return tuple(sorted(ids))


def list_tasks(split: str = "valid_unseen", data_root: str | Path | None = None) -> list[str]:
    """Task ids of a split (`<split folder>/<task folder>/<trial>`), in stable sorted order."""
    return list(_list_tasks(_split_dir(split, data_root)))


def task_type_of(task_id: str) -> str:
    """The task type is the prefix of the task folder (`pick_clean_then_place_in_recep-Mug-...`)."""
    return task_id.split("/")[1].split("-", 1)[0]


def clean_observation(text: str, first: bool = False) -> str:
    """ReAct-style cleanup: no welcome banner, no 'You arrive at loc N.' prefix."""
    text = text.strip()
    if first:
        paras = [p.strip() for p in text.split("\n\n") if p.strip() and not _BANNER.match(p)]
        return "\n".join(paras)
    return _ARRIVE.sub("", text)


def goal_of(first_observation: str) -> str:
    m = _TASK.search(first_observation)
    return m.group(1).rstrip(".") if m else ""


# ---------------------------------------------------------------- engine

@functools.cache
def engine() -> SimpleNamespace:
    """TextWorld's PDDL env and ALFWorld's text-env wrappers, imported once per process."""
    try:
        import alfworld
        import alfworld.agents.expert.handcoded_expert as handcoded
        import alfworld.gen.constants as constants
        import fast_downward
        import textworld
        import textworld.envs.pddl.textgen
        import textworld.logic
        from textworld.envs.pddl import PddlEnv
    except ImportError as e:
        raise SadEvalError(
            f"the ALFWorld engine is not installed ({e}); run `make setup` "
            "(textworld[pddl]==1.7.0 and alfworld==0.3.5 --no-deps)"
        ) from e
    name = "sad_eval.envs._alfred_tw_env"
    if name not in sys.modules:
        path = Path(alfworld.__file__).parent / "agents" / "environment" / "alfred_tw_env.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    tw = sys.modules[name]

    class GuardedExpert(tw.AlfredExpert):
        """AlfredExpert with a per-env RNG and no crash when the handcoded expert gives up."""

        rng: random.Random  # set per env (make_engine) and reseeded on every reset
        error: str | None = None

        def _gather_infos(self) -> None:
            # The handcoded expert draws from the global `random`; swap in this env's own RNG
            # so episodes are reproducible per seed and instances share no state.
            saved, handcoded.random = handcoded.random, self.rng
            self.error = None
            try:
                super()._gather_infos()
            except Exception as e:  # timeout or failure: no advice from here on; the game goes on
                self.state["extra.expert_plan"] = []
                self.error = f"{type(e).__name__}: {e}"
            finally:
                handcoded.random = saved

    _memoize_parses(textworld.envs.pddl.textgen, "_Converter")
    _memoize_parses(textworld.logic, "_ModelConverter")
    _share_context_values(textworld.envs.pddl.textgen)
    # receptacle classes where an object class is usually found (the expert's search prior)
    priors: dict[str, list[str]] = {}
    for recep, objs in constants.VAL_RECEPTACLE_OBJECTS.items():
        for obj in objs:
            priors.setdefault(obj.lower(), []).append(recep.lower())
    return SimpleNamespace(textworld=textworld, fast_downward=fast_downward, PddlEnv=PddlEnv, tw=tw,
                           GuardedExpert=GuardedExpert, priors={k: sorted(v) for k, v in priors.items()})


def _memoize_parses(module, converter: str) -> None:
    """Parse each grammar string once per process in a TextWorld module (`_parse_and_convert`).

    To list the admissible commands, every `PddlEnv` step re-parses the same few hundred short
    strings (command templates, rule conditions) with tatsu: 52 of 181 s of a batched `small`-model
    ALFWorld rollout (profiled, docs/agents.md). The parse tree depends only on the string and is
    only read by the conversion, so it is kept; the conversion still runs on every call, so each
    caller gets new objects, as before (outputs are identical: tests/test_alfworld.py).
    """
    if getattr(module, "_sad_eval_memo", False):
        return
    parser, convert, trees = module._PARSER, getattr(module, converter), {}
    module._sad_eval_original_parse = module._parse_and_convert

    def parse_and_convert(text, rule_name=None, **kwargs):
        if kwargs.get("trace"):  # debugging output is per call
            return convert().walk(parser.parse(text, rule_name=rule_name, **kwargs))
        key = (text, rule_name)
        if key not in trees:
            trees[key] = parser.parse(text, rule_name=rule_name)
        return convert().walk(trees[key])

    module._parse_and_convert, module._sad_eval_memo = parse_and_convert, True


def _share_context_values(textgen) -> None:
    """TextWorld's text generator copies its derivation context for every symbol it expands, and
    deep-copies the entities in it (`copy_context`): 40% of an ALFWorld step after the parse memo
    (profiled). The derivation adds entries to the copied dicts but never changes an entity, so the
    dicts are copied and the entities shared (outputs are identical: tests/test_alfworld.py)."""
    if getattr(textgen, "_sad_eval_original_copy_context", None):
        return
    textgen._sad_eval_original_copy_context = textgen.copy_context

    def copy_context(context):
        return {"state": context["state"], "facts": context["facts"], "variables": dict(context["variables"]),
                "mapping": dict(context["mapping"]), "entity_infos": context["entity_infos"]}

    textgen.copy_context = copy_context


@contextlib.contextmanager
def textworld_as_shipped() -> Iterator[None]:
    """TextWorld's own functions in place of the speed-ups above, for the duration (what benchmarks
    and equivalence tests compare against)."""
    import textworld.envs.pddl.textgen as textgen
    import textworld.logic as logic

    engine()
    fast = (textgen.copy_context, textgen._parse_and_convert, logic._parse_and_convert)
    textgen.copy_context = textgen._sad_eval_original_copy_context
    textgen._parse_and_convert = textgen._sad_eval_original_parse
    logic._parse_and_convert = logic._sad_eval_original_parse
    try:
        yield
    finally:
        textgen.copy_context, textgen._parse_and_convert, logic._parse_and_convert = fast


def sas_cache_dir() -> Path:
    """Where translated games are kept between processes (under ``$SAD_EVAL_CACHE``)."""
    return cache_root() / "alfworld-sas"


def _sas_file(folder: Path, domain: str, problem: str, optimize: bool) -> Path:
    # keyed by the translator's version and the exact PDDL text: another game, another domain
    # file or another fast-downward can never hit an old entry
    h = hashlib.sha256(f"{_FD_VERSION}\0{int(optimize)}\0".encode())
    h.update(domain.encode())
    h.update(b"\0")
    h.update(problem.encode())
    return folder / f"{h.hexdigest()}.pkl.z"


def _read_sas(path: Path) -> Any | None:
    try:
        return pickle.loads(zlib.decompress(path.read_bytes()))
    except Exception:  # absent, torn or foreign: a miss, translated again and overwritten
        return None


def _write_sas(path: Path, value: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(zlib.compress(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), 1))
        os.replace(tmp, path)  # whole or absent: a reader never sees half a file
    except OSError:
        pass  # a read-only cache only costs speed


@contextlib.contextmanager
def translation_cache(memo: dict[tuple[str, str, bool], Any], disk: Path | None = None) -> Iterator[None]:
    """Reuse the PDDL->SAS translation of a game across resets and processes; undo its side effect.

    Every new game's `PddlEnv.load` translates its PDDL twice with fast-downward (~0.4-1 s each,
    90% of a reset); the result (the parsed task and the SAS text) depends only on (domain,
    problem, optimize) and is only read afterwards. So resetting the same game again reuses it
    from `memo`, and with `disk` a game translated by any earlier process is unpickled (~3 ms)
    instead: every evaluation replays the same few hundred games. fast-downward's translator also
    overwrites `sys.argv`; it is restored.
    """
    fd = engine().fast_downward
    original, argv = fd.pddl2sas, list(sys.argv)

    def cached(domain: str, problem: str, verbose: bool = False, optimize: bool = False):
        key = (domain, problem, bool(optimize))
        if key not in memo:
            path = _sas_file(disk, domain, problem, bool(optimize)) if disk is not None else None
            value = _read_sas(path) if path is not None else None
            if value is None:
                value = original(domain, problem, verbose=verbose, optimize=optimize)
                if path is not None:
                    _write_sas(path, value)
            memo[key] = value
        return memo[key]

    fd.pddl2sas = cached
    try:
        yield
    finally:
        fd.pddl2sas = original
        sys.argv[:] = argv


def make_engine(expert: bool):
    """One TextWorld PDDL env with the ALFRED wrappers (its own copy of fast-downward's library);
    with `expert`, also the handcoded expert's plan (slow: only for a teacher that asks for it)."""
    eng = engine()
    extras = ["gamefile"] + (["expert_plan"] if expert else [])
    env = eng.PddlEnv(eng.textworld.EnvInfos(won=True, admissible_commands=True, extras=extras))
    wrappers = [eng.tw.AlfredDemangler(shuffle=False), eng.tw.AlfredInfos]
    if expert:
        # keyword: upstream `init_env` passes the type positionally (as `env`) and it is ignored
        guarded = eng.GuardedExpert(expert_type="handcoded")
        guarded.rng = random.Random(0)
        wrappers.append(guarded)
    for w in wrappers:
        env = w(env)
    return env


def task_params(trial_dir: Path) -> dict[str, str]:
    """The ALFRED goal parameters, lower-cased like the expert's (object, receptacles, lamp)."""
    traj = json.loads((trial_dir / "traj_data.json").read_text())
    params = {k: (v.lower() if isinstance(v, str) else v) for k, v in traj["pddl_params"].items()}
    return {"task_type": traj["task_type"], **params}


@contextlib.contextmanager
def _engine_errors(task_id: str | None) -> Iterator[None]:
    """An engine crash is the env's failure, not the agent's: the harness marks it errored."""
    try:
        yield
    except Exception as e:
        raise EnvError(f"ALFWorld engine failed on {task_id}: {type(e).__name__}: {e}") from e


# ---------------------------------------------------------------- the env

class ALFWorldEnv(TextEnv):
    """One ALFWorld game per episode; actions and observations are text (contract: `envs.base`).

    `reset(options={"task_id": id} | {"index": i})` picks the game; without options a game is
    drawn with the env's seeded RNG. Reward 1.0 and `terminated` on a win; `truncated` after
    `max_steps` actions; `info["rejected"]` when the game answers "Nothing happens." (a command it
    cannot carry out). With `privileged=True` (what the expert asks for) `info["privileged"]`
    carries the handcoded expert's next command (`expert_action`) and the goal parameters.
    `sas_cache=False` translates every new game afresh instead of reusing translations kept in
    `sas_cache_dir()` (same observations either way; for timing the engine as shipped).
    """

    env_name = "ALFWorld"  # in messages
    metadata = {"render_modes": ["ansi"], "render_fps": 1}  # fps: turn-based text, set only to quiet the checker

    def __init__(self, split: str = "valid_unseen", data_root: str | Path | None = None, max_steps: int = 50,
                 privileged: bool = False, tasks: Sequence[str] | None = None, render_mode: str | None = None,
                 sas_cache: bool = True):
        if render_mode not in (None, "ansi"):
            raise SadEvalError(f"unsupported render_mode {render_mode!r} (ALFWorld renders 'ansi' text)")
        self.max_steps = int(max_steps)
        self.render_mode = render_mode
        self._root = _split_dir(split, data_root).parent
        all_ids = list_tasks(split, data_root)
        if tasks is not None:
            unknown = sorted(set(tasks) - set(all_ids))
            if unknown:
                raise SadEvalError(f"unknown ALFWorld task ids for split {split!r}: {', '.join(unknown[:3])}")
            all_ids = sorted(set(tasks))
        if not all_ids:
            raise SadEvalError(f"no ALFWorld games in {self._root / ALFWORLD_SPLITS[split]} "
                               "(run `sad-eval data install`)")
        self._init_text_env(split, all_ids, privileged)
        self._game = make_engine(self.privileged)
        self._loaded: str | None = None
        self._sas: dict[tuple[str, str, bool], Any] = {}
        self._sas_disk = sas_cache_dir() if sas_cache else None
        self._task_id: str | None = None
        self._params: dict[str, str] = {}
        self._goal = ""
        self._obs = ""
        self._steps = 0

    def _reset_task(self, tid: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        trial = self._root / tid
        if self.privileged:
            self._game.rng = random.Random(int(self.np_random.integers(2**31)))
        with translation_cache(self._sas, self._sas_disk), _engine_errors(tid):
            if self._loaded != tid:
                self._loaded = None
                self._sas.clear()  # one game's translation at a time; `load` translates it once
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ResourceWarning)  # PddlEnv.load leaves its file to the GC
                    self._game.load(str(trial / GAME_FILE))
                self._params = task_params(trial)
                self._loaded = tid
            state = self._game.reset()
        self._task_id, self._steps = tid, 0
        self._obs = clean_observation(state["feedback"], first=True)
        self._goal = goal_of(self._obs)
        return self._obs, self._info(state)

    def _step_task(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        with _engine_errors(self._task_id):
            state, _, _ = self._game.step(str(action).strip())
        self._steps += 1
        won = bool(state["won"])
        terminated = won
        truncated = not won and self._steps >= self.max_steps
        self._obs = clean_observation(state["feedback"])
        info = self._info(state)
        info["rejected"] = self._obs.strip().startswith(REJECTED)
        return self._obs, 1.0 if won else 0.0, terminated, truncated, info

    def _info(self, state) -> dict[str, Any]:
        won = bool(state["won"])
        ttype = self._params.get("task_type", task_type_of(self._task_id))
        info: dict[str, Any] = {
            "task_id": self._task_id,
            "task_type": ttype,
            "goal": self._goal,
            "admissible_commands": list(state["admissible_commands"]),
            "won": won,
            "success": won,
            "score": 1.0 if won else 0.0,
            "steps": self._steps,
            "meta": {"task_type": ttype, "goal": self._goal},
        }
        if self.privileged:
            plan = list(state.get("extra.expert_plan") or [])
            params = {k: v for k, v in self._params.items() if v and k != "object_sliced"}
            info["privileged"] = {
                "expert_action": plan[0] if plan else None,
                "expert_plan": plan,
                "expert_error": self._game.error,
                "task_params": params,
                "search_priors": list(engine().priors.get(params.get("object_target", ""), [])),
            }
        return info

    def render(self) -> str | None:
        return self._obs if self.render_mode == "ansi" else None

    def close(self) -> None:
        self._loaded = None
        self._sas.clear()
        self._over = True
