"""Rollout engine: run policies in envs and record episodes.

`run_episode` (in `agents.episode`, so that teachers building few-shot exemplars can use it from
below) is the whole contract in one loop: reset -> (policy turn -> env step)* -> Episode. The
batched engine (`rollout`) steps many envs in lockstep with one policy call per turn.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Sequence

from sad_eval.agents.base import EpisodeState, Policy
from sad_eval.agents.episode import TurnError, apply_turn, finish_episode, run_episode, start_episode
from sad_eval.envs.base import EnvError
from sad_eval.trajectory import Episode

__all__ = ["TurnError", "apply_turn", "finish_episode", "run_episode", "start_episode", "rollout",
           "rollout_parallel", "rollout_sharded", "plan_jobs", "select_tasks", "SUBSETS"]


# ---------------------------------------------------------------- batched lockstep engine

MAX_TURNS_GUARD = 200  # envs truncate long before this; it only stops a runaway env


SUBSETS = ("stratified", "first")


def task_group(task_id: str) -> str:
    """The stratum of a task id: ALFWorld's task type (``split/TYPE-args/trial``), else one group."""
    parts = task_id.split("/")
    return parts[1].split("-")[0] if len(parts) >= 3 else ""


def select_tasks(task_ids: Sequence[str], limit: int | None, subset: str = "stratified", seed: int = 0) -> list[str]:
    """``limit`` tasks of a split: ``first`` takes the first ones in id order (the old behaviour,
    which on ALFWorld is 2 of its 6 task types for N <= 30); ``stratified`` deals them round-robin
    from each group (`task_group`, shuffled with ``seed``) in a seeded group order, so every task
    type is represented equally while it has tasks left (a plain seeded shuffle where ids have no
    groups). Subsets are nested: the first N of a larger sample are the sample of N."""
    ids = list(task_ids)
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; choose from {', '.join(SUBSETS)}")
    if not limit or limit >= len(ids):
        return ids
    if subset == "first":
        return ids[:limit]
    return _deal(ids, seed)[:limit]


def _deal(ids: list[str], seed: int) -> list[str]:
    import random

    groups: dict[str, list[str]] = {}
    for t in sorted(ids):
        groups.setdefault(task_group(t), []).append(t)
    order = sorted(groups)
    random.Random(f"subset:{seed}").shuffle(order)
    for g in order:
        random.Random(f"subset:{seed}:{g}").shuffle(groups[g])
    out, i = [], 0
    while len(out) < len(ids):
        for g in order:
            if i < len(groups[g]):
                out.append(groups[g][i])
        i += 1
    return out


def plan_jobs(task_ids: Sequence[str], samples: int = 1, limit: int | None = None,
              shard: tuple[int, int] | None = None, subset: str = "stratified", subset_seed: int = 0) -> list[tuple[str, int]]:
    """(task_id, sample) jobs in a fixed order: ``limit`` tasks (`select_tasks`), then shard ``i/n``."""
    ids = select_tasks(task_ids, limit, subset, subset_seed) if limit else list(task_ids)
    if shard:
        i, n = shard
        ids = ids[i::n]
    return [(t, k) for t in ids for k in range(samples)]


def rollout(env_factory: Callable[[], Any], policy: Policy, env_name: str, split: str,
            jobs: Sequence[tuple[str, int]], seed: int = 0, batch: int = 1,
            on_episode: Callable[[Episode], None] = lambda e: None) -> None:
    """Play ``jobs`` with ``batch`` envs in lockstep: one policy call per turn for all running
    episodes; a finished episode is recorded at once and its slot takes the next job.

    Timing is each episode's own share (docs/metrics.md): a step's `latency_s` is the batched
    policy call divided by the rows it served plus that episode's own env step; `wall_s` is its
    reset plus those steps, so batch mates' work is not counted against it."""
    queue = deque(jobs)
    envs: list[Any] = [None] * max(1, batch)
    slots: list[tuple[EpisodeState, float] | None] = [None] * len(envs)  # (state, own seconds so far)

    def fail(i: int, state: EpisodeState, own_s: float, err: Exception) -> None:
        on_episode(finish_episode(state, split, policy.name, seed, own_s, error=str(err)))
        slots[i] = None

    try:
        while queue or any(slots):
            for i in range(len(slots)):
                while slots[i] is None and queue:
                    task_id, sample = queue.popleft()
                    t0 = time.perf_counter()
                    state = EpisodeState(env=env_name, task_id=task_id, task="", sample=sample)
                    try:
                        if envs[i] is None:
                            envs[i] = env_factory()
                        state = start_episode(envs[i], env_name, task_id, sample, seed)
                        slots[i] = (state, time.perf_counter() - t0)
                    except EnvError as e:
                        fail(i, state, time.perf_counter() - t0, e)
            active = [i for i, s in enumerate(slots) if s is not None]
            if not active:
                continue
            t_policy = time.perf_counter()
            turns = policy.act([slots[i][0] for i in active])
            share_s = (time.perf_counter() - t_policy) / len(active)  # each row's share of the call
            for i, turn in zip(active, turns):
                state, own_s = slots[i]
                t_step = time.perf_counter()
                try:
                    done, _ = apply_turn(envs[i], state, turn, share_s)
                except EnvError as e:
                    fail(i, state, own_s + share_s + time.perf_counter() - t_step, e)
                    continue
                own_s += state.steps[-1].latency_s
                slots[i] = (state, own_s)
                if done or len(state.steps) >= MAX_TURNS_GUARD:
                    on_episode(finish_episode(state, split, policy.name, seed, own_s))
                    slots[i] = None
    finally:
        for env in envs:
            if env is not None:
                env.close()


# ---------------------------------------------------------------- process-parallel engine (CPU-bound experts)

_WORKER: dict[str, Any] = {}


def _worker_init(spec, env_name: str, env_kwargs: dict, split: str, seed: int) -> None:
    from sad_eval.agents.registry import make_policy
    from sad_eval.envs import make_env

    _WORKER.update(env=make_env(env_name, split=split, **env_kwargs), policy=make_policy(spec),
                   env_name=env_name, split=split, seed=seed)


def _worker_job(job: tuple[str, int]) -> dict:
    w = _WORKER
    ep = run_episode(w["env"], w["policy"], w["env_name"], job[0], w["split"], w["seed"], job[1])
    return ep.to_dict()


def rollout_parallel(spec, env_name: str, env_kwargs: dict, split: str, jobs: Sequence[tuple[str, int]],
                     seed: int, workers: int, on_episode: Callable[[Episode], None]) -> None:
    """Episodes spread over ``workers`` processes, each with its own env and policy; results are
    recorded by this process as they arrive (so a kill loses only episodes in flight)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(spec, env_name, env_kwargs, split, seed)) as pool:
        futures = [pool.submit(_worker_job, job) for job in jobs]
        for fut in as_completed(futures):
            on_episode(Episode.from_dict(fut.result()))


# ---------------------------------------------------------------- sharded lockstep engine (local models)

def quiet_transformers() -> None:
    """transformers' own "Loading weights" bars would interleave with the recorder's progress bar."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _die_with_parent() -> None:
    """Linux: end this worker when the recording process dies (a SIGKILLed run leaves no orphans
    computing episodes nobody records)."""
    import signal

    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _shard_main(spec, env_name: str, env_kwargs: dict, split: str, jobs: list, seed: int, batch: int, results) -> None:
    _die_with_parent()
    import traceback

    from sad_eval.agents.registry import make_policy
    from sad_eval.envs import make_env
    from sad_eval.errors import SadEvalError

    try:
        if spec.kind == "hf":
            quiet_transformers()
        policy = make_policy(spec)
        rollout(lambda: make_env(env_name, split=split, **env_kwargs), policy, env_name, split, jobs, seed, batch,
                lambda ep: results.put(("episode", ep.to_dict())))
        results.put(("done", None))
    except SadEvalError as e:
        results.put(("usage", str(e)))
    except BaseException:  # noqa: BLE001 - reported to the recording process, which raises it
        results.put(("crash", traceback.format_exc()))


def rollout_sharded(spec, env_name: str, env_kwargs: dict, split: str, jobs: Sequence[tuple[str, int]], seed: int,
                    batch: int, workers: int, on_episode: Callable[[Episode], None]) -> None:
    """`rollout` in ``workers`` processes, each with its own copy of the policy playing its share of
    ``jobs`` (every ``workers``-th, a fixed split, so which episodes share a batch does not depend
    on timing) in lockstep batches of ``batch``. For a local model on a small CPU: two one-thread
    copies ran an eval 1.73x faster than one, one two-thread copy 1.25x
    (benchmarks/bench_eval_workers.py). Episodes are recorded by this process as they arrive."""
    import multiprocessing as mp
    import queue as queue_mod

    from sad_eval.errors import SadEvalError

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    shards = [list(jobs[i::workers]) for i in range(workers)]
    procs = [ctx.Process(target=_shard_main, daemon=True,
                         args=(spec, env_name, env_kwargs, split, shard, seed, batch, results))
             for shard in shards if shard]
    for p in procs:
        p.start()
    running = len(procs)
    try:
        while running:
            try:
                kind, payload = results.get(timeout=2)
            except queue_mod.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise SadEvalError(f"an eval worker process died (exit code {dead[0]}; out of memory?); "
                                       "rerun to resume, with fewer --workers or a smaller --batch") from None
                continue
            if kind == "episode":
                on_episode(Episode.from_dict(payload))
            elif kind == "done":
                running -= 1
            elif kind == "usage":
                raise SadEvalError(payload)
            else:
                raise RuntimeError(f"an eval worker process failed:\n{payload}")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=10)
