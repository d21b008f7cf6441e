"""Parallel episode collection: a process pool where each worker owns one env and one policy.

Workers play whole episodes (`harness.run_episode`) and send finished `Episode`s back; only the
parent writes, through `TrajectoryWriter`, as results arrive, so a killed run keeps every
finished episode and a rerun skips the task ids already recorded (sample 0). The function is
env-agnostic (`collect`); `collect_expert` is the ALFWorld teacher run.

    python -m sad_eval.envs.alfworld_collect --split valid_unseen --out runs/expert.jsonl --workers 2
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from sad_eval.trajectory import Episode, TrajectoryWriter, recorded_keys

# per-worker state, set once by the pool initializer
_WORKER: dict[str, Any] = {}


@dataclass
class CollectResult:
    written: int
    successes: int
    errors: int
    skipped: int
    wall_s: float

    @property
    def episodes_per_min(self) -> float:
        return 60.0 * self.written / self.wall_s if self.wall_s > 0 else 0.0


def _init_worker(env_name: str, env_kwargs: dict[str, Any], policy_factory: Callable[[], Any]) -> None:
    from sad_eval.envs import make_env

    _WORKER["env"] = make_env(env_name, **env_kwargs)
    _WORKER["policy"] = policy_factory()
    _WORKER["env_name"] = env_name
    _WORKER["split"] = env_kwargs.get("split", "")


def _play(job: tuple[str, int]) -> Episode:
    from sad_eval.harness import run_episode

    task_id, seed = job
    try:
        return run_episode(_WORKER["env"], _WORKER["policy"], _WORKER["env_name"], task_id,
                           split=_WORKER["split"], seed=seed)
    except Exception as e:  # one broken game must not stop the pool: record it as errored
        return Episode(env=_WORKER["env_name"], split=_WORKER["split"], task_id=task_id,
                       agent=getattr(_WORKER["policy"], "name", ""), seed=seed, status="error",
                       error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")


def _context() -> mp.context.BaseContext:
    # never fork: the parent may hold TextWorld engines, threads or a loaded model
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def collect(env_name: str, policy_factory: Callable[[], Any], task_ids: Sequence[str], out_path: str | Path,
            workers: int = 2, env_kwargs: dict[str, Any] | None = None, seed: int = 0,
            log: Callable[[str], None] | None = None) -> CollectResult:
    """Play every task id not yet in `out_path` and append the episodes there.

    `policy_factory` and `env_kwargs` must be picklable (a module-level function or a
    `functools.partial`): each worker builds its own env and policy. `workers=0` plays in this
    process (no pool), which is handy for debugging.
    """
    env_kwargs = dict(env_kwargs or {})
    done = {tid for tid, sample in recorded_keys(out_path) if sample == 0}
    todo = [t for t in task_ids if t not in done]
    result = CollectResult(0, 0, 0, len(task_ids) - len(todo), 0.0)
    t0 = time.perf_counter()
    jobs = [(t, seed) for t in todo]

    def record(writer: TrajectoryWriter, ep: Episode) -> None:
        writer.write(ep)
        result.written += 1
        result.successes += int(ep.success)
        result.errors += int(ep.status == "error")
        if log:
            log(f"[{result.written}/{len(todo)}] {'ok ' if ep.success else 'ERR' if ep.status == 'error' else 'fail'} "
                f"{ep.task_id} ({len(ep.steps)} steps)")

    with TrajectoryWriter(out_path) as writer:
        if workers <= 0:
            _init_worker(env_name, env_kwargs, policy_factory)
            try:
                for job in jobs:
                    record(writer, _play(job))
            finally:
                _WORKER["env"].close()
                _WORKER.clear()
        elif jobs:
            ctx = _context()
            with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker,
                          initargs=(env_name, env_kwargs, policy_factory)) as pool:
                for ep in pool.imap_unordered(_play, jobs, chunksize=1):
                    record(writer, ep)
    result.wall_s = time.perf_counter() - t0
    return result


def collect_expert(split: str = "valid_unseen", out_path: str | Path = "expert.jsonl", workers: int = 2,
                   limit: int | None = None, task_ids: Sequence[str] | None = None,
                   data_root: str | Path | None = None, max_steps: int = 50,
                   log: Callable[[str], None] | None = None) -> CollectResult:
    """The ALFWorld teacher on a split (or on `task_ids`), in parallel, resumable."""
    from sad_eval.agents.experts import make_expert
    from sad_eval.envs.alfworld import list_tasks

    ids = list(task_ids) if task_ids is not None else list_tasks(split, data_root)
    if limit is not None:
        ids = ids[:limit]
    kwargs = {"split": split, "data_root": str(data_root) if data_root else None, "max_steps": max_steps,
              "expert": True}
    return collect("alfworld", functools.partial(make_expert, "alfworld"), ids, out_path, workers, kwargs, log=log)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Collect ALFWorld teacher trajectories in parallel.")
    ap.add_argument("--split", default="valid_unseen")
    ap.add_argument("--out", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--max-steps", type=int, default=50)
    args = ap.parse_args(argv)
    res = collect_expert(args.split, args.out, args.workers, args.limit, max_steps=args.max_steps,
                         log=lambda m: print(m, file=sys.stderr, flush=True))
    from sad_eval.trajectory import read_trajectories

    eps = [e for e in read_trajectories(args.out) if e.sample == 0]
    won = sum(e.success for e in eps)
    print(f"this run: {res.written} episodes ({res.successes} won, {res.errors} errored, {res.skipped} already "
          f"recorded) in {res.wall_s:.0f}s, {res.episodes_per_min:.1f} episodes/min")
    print(f"file total: {won}/{len(eps)} won ({100 * won / max(1, len(eps)):.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
