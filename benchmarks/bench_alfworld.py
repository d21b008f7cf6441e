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

from sad_eval.envs.alfworld import GAME_FILE, ALFWorldEnv, clean_observation, engine, list_tasks, task_type_of
from sad_eval.envs.alfworld_collect import collect_expert
from sad_eval.paths import data_root


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
    from sad_eval.harness import run_episode

    env = ALFWorldEnv(tasks=[tid])
    ep = run_episode(env, make_expert("alfworld"), "alfworld", tid)
    env.close()
    return [s.action for s in ep.steps]


def raw_env(tid: str):
    eng = engine()
    tw, textworld = eng.tw, eng.textworld
    import textworld.gym  # noqa: F401

    infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["gamefile"])
    path = str(data_root() / "alfworld" / "json_2.1.1" / tid / GAME_FILE)
    env_id = textworld.gym.register_games([path], infos, max_episode_steps=50, asynchronous=False,
                                          wrappers=[tw.AlfredDemangler(shuffle=False), tw.AlfredInfos])
    return textworld.gym.make(env_id)


def time_raw(tid: str, cmds: list[str]) -> tuple[list[float], list[float], list[str]]:
    env = raw_env(tid)
    resets, steps, obs = [], [], []
    for _ in range(2):  # a textworld.gym reset always reloads the game
        t = time.perf_counter()
        o, _ = env.reset()
        resets.append(time.perf_counter() - t)
    obs.append(clean_observation(o[0] if isinstance(o, list) else o, first=True))
    for c in cmds:
        t = time.perf_counter()
        o, *_ = env.step(c)
        steps.append(time.perf_counter() - t)
        obs.append(clean_observation(o))
    env.close()
    return resets, steps, obs


def time_ours(tid: str, cmds: list[str], expert: bool) -> tuple[list[float], list[float], list[str]]:
    env = ALFWorldEnv(tasks=[tid], expert=expert, max_steps=len(cmds) + 1)
    resets, steps, obs = [], [], []
    for _ in range(2):  # first: load + reset; second: same game again (translation reused)
        t = time.perf_counter()
        o, _ = env.reset(seed=0, options={"task_id": tid})
        resets.append(time.perf_counter() - t)
    obs.append(o)
    for c in cmds:
        t = time.perf_counter()
        o, *_ = env.step(c)
        steps.append(time.perf_counter() - t)
        obs.append(o)
    env.close()
    return resets, steps, obs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--games", type=int, default=6)
    ap.add_argument("--skip-collect", action="store_true")
    args = ap.parse_args()
    engine()  # import cost out of the timings
    games = pick_games(args.games)
    rows = {k: {"reset1": [], "reset2": [], "step": []} for k in ("raw", "ours", "ours+expert")}
    for tid in games:
        cmds = teacher_commands(tid)
        runs = {"raw": time_raw(tid, cmds), "ours": time_ours(tid, cmds, False),
                "ours+expert": time_ours(tid, cmds, True)}
        assert runs["raw"][2] == runs["ours"][2] == runs["ours+expert"][2], f"observations differ on {tid}"
        for k, (resets, steps, _) in runs.items():
            rows[k]["reset1"].append(resets[0])
            rows[k]["reset2"].append(resets[1])
            rows[k]["step"].extend(steps)
        print(f"  {tid}: {len(cmds)} commands, observations identical")

    mean = statistics.mean
    print(f"\nlatency on {len(games)} valid_unseen games (mean; ratio = env / raw)")
    print(f"{'env':<13} {'reset new game':>15} {'reset same game':>16} {'step':>10}")
    raw = {m: mean(v) for m, v in rows["raw"].items()}
    for k, r in rows.items():
        m = {x: mean(v) for x, v in r.items()}
        print(f"{k:<13} {m['reset1']:>8.2f}s x{m['reset1'] / raw['reset1']:.2f} "
              f"{m['reset2']:>8.2f}s x{m['reset2'] / raw['reset2']:.2f} "
              f"{1000 * m['step']:>6.0f}ms x{m['step'] / raw['step']:.2f}")

    if args.skip_collect:
        return
    print(f"\nteacher collection on the same {len(games)} games (worker start-up included)")
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            res = collect_expert("valid_unseen", Path(tmp) / f"w{workers}.jsonl", workers=workers, task_ids=games)
            print(f"workers={workers}: {res.written} episodes ({res.successes} won) in {res.wall_s:.1f}s "
                  f"= {res.episodes_per_min:.1f} episodes/min")


if __name__ == "__main__":
    main()
