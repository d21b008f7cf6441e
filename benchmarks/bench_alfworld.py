"""ALFWorld: latency of `sad_eval/ALFWorld-v0` against the raw TextWorld gym env, and teacher
collection throughput with 1 and 2 workers.

Raw env = what ReAct / alfworld's `AlfredTWEnv.init_env` build for evaluation: `textworld.gym`
over the game file with the `AlfredDemangler` and `AlfredInfos` wrappers, no expert. Both envs
replay the same command sequence (the teacher's, recorded once) on the same games; their
observations are checked equal after the ReAct cleanup.

    .venv/bin/python benchmarks/bench_alfworld.py [--games 6] [--skip-collect]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sad_eval.envs.alfworld import (GAME_FILE, ALFWorldEnv, clean_observation, engine, list_tasks, task_type_of,
                                    textworld_as_shipped)
from sad_eval.paths import data_root


def collect_expert(out: Path, workers: int, games: list[str]):
    """The teacher through the product's own harness (`sad-eval collect --workers N`)."""
    from sad_eval.agents.experts import expert_env_kwargs
    from sad_eval.agents.registry import AgentSpec
    from sad_eval.run import RunConfig, execute

    spec = AgentSpec(agent="expert", env="alfworld")
    return execute(RunConfig(spec=spec, split="valid_unseen", out=out, workers=workers, tasks=games,
                             env_kwargs=expert_env_kwargs("alfworld"), kind="collect"), progress=False)


def pick_games(n: int) -> list[str]:
    """n valid_unseen games spread over the task types (round-robin in task order)."""
    by_type: dict[str, list[str]] = {}
    for tid in list_tasks("valid_unseen"):
        by_type.setdefault(task_type_of(tid), []).append(tid)
    out, i = [], 0
    while len(out) < n:
        for ids in by_type.values():
            if i < len(ids) and len(out) < n:
                out.append(ids[i])
        i += 1
    return out


def teacher_commands(tid: str) -> list[str]:
    from sad_eval.agents.experts import make_expert
    from sad_eval.agents.episode import run_episode

    env = ALFWorldEnv(tasks=[tid], privileged=True)
    ep = run_episode(env, make_expert("alfworld"), "alfworld", tid)
    env.close()
    return [s.action for s in ep.steps]


def raw_env(tid: str):
    eng = engine()
    tw, textworld = eng.tw, eng.textworld
    import textworld.gym  # noqa: F401

    infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["gamefile"])
    path = str(data_root() / "alfworld" / "json_2.1.1" / tid / GAME_FILE)
    env_id = textworld.gym.register_games([path], infos, max_episode_steps=100, asynchronous=False,
                                          wrappers=[tw.AlfredDemangler(shuffle=False), tw.AlfredInfos])
    return textworld.gym.make(env_id)


class Raw:
    """The raw env behind the same small interface as ours (a textworld.gym reset always reloads),
    on TextWorld as shipped (without the engine speed-ups `alfworld.engine` installs in-process)."""

    def __init__(self, tid: str):
        with textworld_as_shipped():
            self.env = raw_env(tid)

    def reset(self) -> str:
        with textworld_as_shipped():
            o, _ = self.env.reset()
        return clean_observation(o, first=True)

    def step(self, cmd: str) -> str:
        with textworld_as_shipped():
            return clean_observation(self.env.step(cmd)[0])

    def close(self) -> None:
        self.env.close()


class Ours:
    def __init__(self, tid: str, expert: bool, n: int, sas_cache: bool = False):
        self.tid = tid
        self.env = ALFWorldEnv(tasks=[tid], privileged=expert, max_steps=n + 1, sas_cache=sas_cache)

    def reset(self) -> str:
        return self.env.reset(seed=0, options={"task_id": self.tid})[0]

    def step(self, cmd: str) -> str:
        return self.env.step(cmd)[0]

    def close(self) -> None:
        self.env.close()


def timed(fn, *args) -> tuple[float, str]:
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def time_game(tid: str, cmds: list[str], rows: dict[str, dict[str, list[float]]]) -> None:
    """Interleave the envs (each reset, then each command on all three in turn) so that load
    changes on a shared machine hit all of them alike."""
    # "ours+disk": the game's translation already in the on-disk cache (the teacher's run put it
    # there), as in every evaluation after the first on the same games
    envs = {"raw": Raw(tid), "ours": Ours(tid, False, len(cmds)), "ours+expert": Ours(tid, True, len(cmds)),
            "ours+disk": Ours(tid, False, len(cmds), sas_cache=True)}
    obs: dict[str, list[str]] = {k: [] for k in envs}
    for phase in ("reset1", "reset2"):  # new game; the same game again
        for k, e in envs.items():
            dt, o = timed(e.reset)
            rows[k][phase].append(dt)
            if phase == "reset2":
                obs[k].append(o)
    for c in cmds:
        for k, e in envs.items():
            dt, o = timed(e.step, c)
            rows[k]["step"].append(dt)
            obs[k].append(o)
    for e in envs.values():
        e.close()
    assert obs["raw"] == obs["ours"] == obs["ours+expert"] == obs["ours+disk"], f"observations differ on {tid}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--games", type=int, default=6)
    ap.add_argument("--skip-collect", action="store_true")
    args = ap.parse_args()
    engine()  # import cost out of the timings
    games = pick_games(args.games)
    rows = {k: {"reset1": [], "reset2": [], "step": []} for k in ("raw", "ours", "ours+expert", "ours+disk")}
    for tid in games:
        cmds = teacher_commands(tid)
        time_game(tid, cmds, rows)
        print(f"  {tid}: {len(cmds)} commands, observations identical")

    stat = statistics.median
    print(f"\nlatency on {len(games)} valid_unseen games (median; ratio = env / raw)")
    print(f"{'env':<13} {'reset new game':>15} {'reset same game':>16} {'step':>10}")
    raw = {m: stat(v) for m, v in rows["raw"].items()}
    for k, r in rows.items():
        m = {x: stat(v) for x, v in r.items()}
        print(f"{k:<13} {m['reset1']:>8.2f}s x{m['reset1'] / raw['reset1']:.2f} "
              f"{m['reset2']:>8.2f}s x{m['reset2'] / raw['reset2']:.2f} "
              f"{1000 * m['step']:>6.0f}ms x{m['step'] / raw['step']:.2f}")

    if args.skip_collect:
        return
    print(f"\nteacher collection on the same {len(games)} games (worker start-up included)")
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            t0 = time.perf_counter()
            eps = collect_expert(Path(tmp) / f"w{workers}.jsonl", workers, games)
            wall = time.perf_counter() - t0
            print(f"workers={workers}: {len(eps)} episodes ({sum(e.success for e in eps)} won) in {wall:.1f}s "
                  f"= {60 * len(eps) / wall:.1f} episodes/min")


if __name__ == "__main__":
    main()
