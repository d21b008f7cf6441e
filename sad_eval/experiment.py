"""`sad-eval experiment CONFIG.yaml`: collect -> distill -> eval -> report, stage by stage.

Every stage writes into the run directory and leaves a stamp (`stages/NAME.json`) holding a hash of
its inputs (its config section and the files it reads). A rerun skips a stage whose stamp matches;
an interrupted stage resumes (trajectory files skip recorded episodes; training resumes from its last
checkpoint). `manifest.json` lists every stage with its command-line equivalent, status and timing.

The run directory's layout is sad_eval/layout.py.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from sad_eval.data import sha256_file
from sad_eval.envs.spec import env_names, find_spec
from sad_eval.errors import SadEvalError, redact_url
from sad_eval.layout import ckpt_dir, eval_file, partial_file, student_key, teacher_file
from sad_eval.statefiles import CorruptStateFile, read_json_state, write_json_atomic, write_text_atomic

# settings that change speed, not results: left out of stage digests so a rerun with another
# thread or process count resumes instead of starting over
SPEED_ONLY = ("threads", "prefix_cache", "workers")
# the eval and collect sections' keys: the RunSettings fields (sad_eval/settings.py) those stages take
# from the config (the rest come from the env plans)
SECTION_KEYS = {"eval": ("batch", "max_new_tokens", "threads", "prefix_cache", "vote", "workers"),
                "collect": ("workers", "samples", "batch", "teacher_topk")}
METHODS = ("sad", "token", "no-seg", "reason-only", "action-only", "random-span")


@dataclass
class EnvPlan:
    name: str
    train_split: str = "train"
    train_tasks: int | None = 20
    eval_split: str = ""
    eval_tasks: int | None = 10
    max_steps: int | None = None  # eval step cap (None: the env's default)
    teacher: str = ""  # expert | oracle | checkpoint | openai:MODEL
    base_url: str | None = None  # for an openai:MODEL teacher
    subset: str = "stratified"  # how train_tasks/eval_tasks are picked (harness.select_tasks); "first" = id order
    # few-shot exemplars (agents/exemplars.py: K, react, react:KEY) of a model teacher's prompts and of
    # the students' prompts (trained and evaluated with them); None: zero-shot
    exemplars: str | int | None = None


@dataclass
class Student:
    name: str  # label in tables
    student: str  # tiny | small | base | path | smollm2-135m
    init_from_layers: int | None = None
    # this student's own distill settings over the config's `distill:` section (a learning-rate
    # sweep, LoRA against full fine-tuning): students of one study share the teacher data and evals
    distill: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """What names the student in stage digests (its distill settings enter as settings)."""
        return {"name": self.name, "student": self.student, "init_from_layers": self.init_from_layers}


@dataclass
class ExperimentConfig:
    name: str
    envs: list[EnvPlan]
    students: list[Student]
    methods: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    distill: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields
    eval: dict[str, Any] = field(default_factory=dict)  # batch, max_new_tokens, threads
    collect: dict[str, Any] = field(default_factory=dict)  # workers, samples, batch
    report: dict[str, Any] = field(default_factory=dict)  # ablation_student, mask_samples
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def max_new_tokens(self) -> int:
        """The eval decoding budget per turn; training reserves as much room after each prompt."""
        return int(self.eval.get("max_new_tokens", 64))


def _expect(path: Path, where: str, value: Any, kind: type, what: str) -> Any:
    """``value`` if it is a ``kind`` (a bool is no integer here), else one error naming ``where``."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise SadEvalError(f"{path}: {where} must be {what}, got {type(value).__name__} {_brief(value)}")
    return value


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_distill(path: Path, opts: dict[str, Any], where: str = "distill") -> None:
    """The distill section holds `TrainConfig` fields: unknown names and wrong scalar types are
    reported here, not as a traceback deep inside training."""
    import dataclasses

    from sad_eval.distill.trainer import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for key, v in opts.items():
        f = fields.get(key)
        if f is None or key in ("data", "student", "out", "method", "seed", "resume", "init_from_layers", "progress"):
            raise SadEvalError(f"{path}: {where}.{key} is not a distill setting")
        default = f.default if f.default is not dataclasses.MISSING else None
        if v is None or default is None:
            continue
        want = type(default)
        ok = (isinstance(v, (int, float)) and not isinstance(v, bool)) if want is float else \
            isinstance(v, want) and (want is bool or not isinstance(v, bool))
        if not ok:
            raise SadEvalError(f"{path}: {where}.{key} must be {want.__name__}, got {_brief(v)}")


def load_config(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise SadEvalError(f"experiment config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise SadEvalError(f"{path}: not UTF-8 text (byte {e.start}); an experiment config is YAML") from None
    except yaml.YAMLError as e:
        raise SadEvalError(f"{path}: not valid YAML ({e})") from e
    _expect(path, "the config", raw, dict, "a mapping of name, envs, students, ...")
    known = {"name", "envs", "students", "methods", "seeds", "distill", "eval", "collect", "report"}
    unknown = set(map(str, raw)) - known
    if unknown:
        raise SadEvalError(f"{path}: unknown keys {sorted(unknown)}; expected {sorted(known)}")
    envs = []
    for name, plan in _expect(path, "envs", raw.get("envs") or {}, dict, "a mapping env -> settings").items():
        spec = find_spec(name)
        if spec is None:
            raise SadEvalError(f"{path}: unknown env {name!r}; choose from {', '.join(env_names())}")
        plan = dict(_expect(path, f"envs.{name}", plan or {}, dict, "a mapping of settings"))
        plan.setdefault("train_split", spec.train_split)
        plan.setdefault("eval_split", spec.default_split)
        plan.setdefault("teacher", spec.teacher)
        try:
            envs.append(EnvPlan(name=name, **plan))
        except TypeError as e:
            raise SadEvalError(f"{path}: envs.{name}: {e}") from e
        for key in ("train_tasks", "eval_tasks", "max_steps"):
            v = plan.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise SadEvalError(f"{path}: envs.{name}.{key} must be a positive integer, got {_brief(v)}")
        for key in ("train_split", "eval_split", "teacher"):
            _expect(path, f"envs.{name}.{key}", plan.get(key, ""), str, "a string")
        try:
            from sad_eval.agents.exemplars import parse_spec

            parse_spec(envs[-1].exemplars)
        except SadEvalError as e:
            raise SadEvalError(f"{path}: envs.{name}.exemplars: {e}") from None
    if not envs:
        raise SadEvalError(f"{path}: no envs")
    students = []
    for i, s in enumerate(_expect(path, "students", raw.get("students") or [], list, "a list")):
        s = {"student": s} if isinstance(s, str) else dict(_expect(path, f"students[{i}]", s, dict,
                                                                    "a name or a mapping"))
        s.setdefault("name", s.get("student"))
        try:
            student = Student(**s)
        except TypeError as e:
            raise SadEvalError(f"{path}: students[{i}]: {e}") from e
        _expect(path, f"students[{i}].student", student.student, str, "a string")
        _expect(path, f"students[{i}].name", student.name, str, "a string")
        if student.init_from_layers is not None:
            _expect(path, f"students[{i}].init_from_layers", student.init_from_layers, int, "an integer")
        _expect(path, f"students[{i}].distill", student.distill, dict, "a mapping of distill settings")
        _check_distill(path, student.distill, where=f"students[{i}].distill")
        students.append(student)
    methods = list(_expect(path, "methods", raw.get("methods") or ["sad", "token"], list, "a list"))
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SadEvalError(f"{path}: unknown methods {bad}; choose from {', '.join(METHODS)}")
    if not students:
        raise SadEvalError(f"{path}: no students")
    seeds = list(_expect(path, "seeds", raw.get("seeds") or [0], list, "a list of integers"))
    for sd in seeds:
        _expect(path, "seeds", sd, int, "a list of integers")
    sections = {k: dict(_expect(path, k, raw.get(k) or {}, dict, "a mapping"))
                for k in ("distill", "eval", "collect", "report")}
    for sec, keys in SECTION_KEYS.items():
        unknown = sorted(set(map(str, sections[sec])) - set(keys))
        if unknown:  # a setting the stages would not apply must not pass for one they do
            raise SadEvalError(f"{path}: {sec}.{unknown[0]} is not a setting of the {sec} section; expected one of {', '.join(keys)}")
        for key, v in sections[sec].items():
            want = bool if key == "prefix_cache" else int
            if want is bool and not isinstance(v, bool):
                raise SadEvalError(f"{path}: {sec}.{key} must be true or false, got {_brief(v)}")
            if want is int and (not isinstance(v, int) or isinstance(v, bool) or v < (0 if key == "teacher_topk" else 1)):
                raise SadEvalError(f"{path}: {sec}.{key} must be a positive integer, got {_brief(v)}")
    _check_distill(path, sections["distill"])
    name = raw.get("name", path.stem)
    _expect(path, "name", name, str, "a string")
    return ExperimentConfig(name=name, envs=envs, students=students, methods=methods,
                            seeds=seeds, raw=raw, **sections)


# ---------------------------------------------------------------- stage bookkeeping

def _file_digest(path: Path) -> str:
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(path.rglob("*")):
            if p.is_file() and p.suffix in (".json", ".safetensors"):
                h.update(p.name.encode() + sha256_file(p).encode())
        return h.hexdigest()
    return sha256_file(path)


def inputs_hash(settings: dict[str, Any], files: list[Path] = ()) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for f in files:
        h.update(_file_digest(Path(f)).encode() if Path(f).exists() else b"missing")
    return h.hexdigest()


@dataclass
class Incomplete:
    """What a stage returns when it ended without finishing its work (e.g. errored episodes)."""

    reason: str


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)  # stage names carry the config's student names: print them as text


class Stages:
    """Stamps and the manifest of one run directory."""

    def __init__(self, root: Path, log: Callable[[str], Any]):
        self.root = root
        self.log = log
        (root / "stages").mkdir(parents=True, exist_ok=True)
        self.manifest_path = root / "manifest.json"
        self.manifest = self._read_manifest()

    def _read_manifest(self) -> dict[str, Any]:
        """The manifest is a record, rebuilt from the stages as they run: an unreadable one (torn
        by a kill under an older version) is set aside with a note instead of stopping the run."""
        if not self.manifest_path.is_file():
            return {"stages": {}}
        try:
            m = read_json_state(self.manifest_path, "experiment manifest")
        except CorruptStateFile as e:
            m = None
            self.log(f"[yellow]note:[/] {_escape(str(e).split(';')[0])}; rebuilding it")
        if not isinstance(m, dict) or not isinstance(m.get("stages"), dict):
            return {"stages": {}}
        return m

    def stamp_matches(self, stamp: Path, digest: str) -> bool:
        """Whether a stage's stamp records ``digest`` (an unreadable stamp just means: run again)."""
        if not stamp.is_file():
            return False
        try:
            data = read_json_state(stamp, "stage stamp")
        except CorruptStateFile:
            self.log(f"[yellow]note:[/] unreadable stamp {_escape(str(stamp))}: the stage runs again")
            return False
        return isinstance(data, dict) and data.get("inputs") == digest

    def run(self, name: str, digest: str, fn: Callable[[], Any], command: str) -> bool:
        """Run ``fn`` unless the stage's stamp matches ``digest``; returns True if it ran."""
        stamp = self.root / "stages" / f"{name}.json"
        if self.stamp_matches(stamp, digest):
            self.log(f"[dim]skip[/] {_escape(name)} (inputs unchanged)")
            self._record(name, "skipped", command, 0.0)
            return False
        self.log(f"[bold]run[/]  {_escape(name)}")
        t0 = time.perf_counter()
        self._record(name, "running", command, 0.0)
        result = fn()
        dt = time.perf_counter() - t0
        if isinstance(result, Incomplete):  # not stamped: the next run resumes (and retries) it
            self.log(f"[yellow]incomplete[/] {_escape(name)}: {_escape(result.reason)}; rerun to retry")
            self._record(name, "incomplete", command, dt)
            return True
        write_json_atomic(stamp, {"inputs": digest, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": dt},
                          indent=None)
        self._record(name, "done", command, dt)
        return True

    def _record(self, name: str, status: str, command: str, seconds: float) -> None:
        entry = self.manifest["stages"].setdefault(name, {})
        entry.update(status=status, command=redact_url(command))  # an endpoint's credentials stay out
        if status == "done":
            entry["seconds"] = round(seconds, 1)
        self.save()

    def save(self) -> None:
        write_json_atomic(self.manifest_path, self.manifest)


# ---------------------------------------------------------------- the pipeline

def select(items: list, wanted, key: Callable[[Any], Any], what: str) -> list:
    """The items named in `wanted` (all of them when it is empty), in config order."""
    if not wanted:
        return list(items)
    names = [key(i) for i in items]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise SadEvalError(f"unknown {what}(s) {unknown}; the config has {names}")
    return [i for i in items if key(i) in wanted]


def _show_warning(log: Callable[[str], Any], msg: Any) -> None:
    """Of a distill run's log, the experiment shows only the warnings (e.g. teacher turns longer than
    the eval budget): the rest is in the checkpoint's loss log."""
    from rich.markup import escape

    if str(msg).startswith("warning:"):
        log(f"     [yellow]{escape(str(msg))}[/]")


def _stamp_text(stamp: Path) -> str | None:
    """A `.partial` stamp's digest (None when missing or unreadable: the stage starts over)."""
    try:
        return stamp.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def run_experiment(config_path: str | Path, out: str | Path | None = None, log: Callable[[str], Any] = print,
                   stages_only: tuple[str, ...] | None = None, progress: bool = True,
                   threads: int | None = None, only_students: tuple[str, ...] = (),
                   only_seeds: tuple[int, ...] = (), merge: tuple[Path, ...] = (),
                   only_methods: tuple[str, ...] = (), eval_workers: int | None = None) -> Path:
    """Run (or resume) an experiment.

    `threads` overrides the config's CPU threads for distill and eval, `eval_workers` its eval
    processes per model; both are speed settings, so neither is part of any stage's identity.
    `only_students`/`only_seeds`/`only_methods` run one shard of the study (on another machine, or
    in another session); `merge` adds the rows of other shards' results_long.csv to the report, so
    the shards' tables come together without their checkpoints."""
    from sad_eval.provenance import versions

    cfg = load_config(config_path)
    if eval_workers:
        cfg.eval["workers"] = int(eval_workers)
    if threads:
        cfg.distill["threads"] = cfg.eval["threads"] = int(threads)
        for st in cfg.students:
            if "threads" in st.distill:
                st.distill["threads"] = int(threads)
    run_students = select(cfg.students, only_students, lambda s: s.name, "student")
    run_seeds = select(cfg.seeds, only_seeds, lambda s: s, "seed")
    run_methods = select(cfg.methods, only_methods, lambda m: m, "method")
    from sad_eval.reports.experiment_report import require_results_files

    require_results_files(merge)
    root = Path(out or Path("runs") / cfg.name)
    check_stages(cfg, root)
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config_path, root / "config.yaml") if Path(config_path).resolve() != (root / "config.yaml").resolve() else None
    stages = Stages(root, log)
    stages.manifest.update(name=cfg.name, config=cfg.raw, versions=versions(),
                           started=stages.manifest.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S"))
    want = lambda s: stages_only is None or s in stages_only  # noqa: E731

    if want("collect"):
        for plan in cfg.envs:
            _collect_stage(cfg, plan, root, stages, progress)
    # one (student, seed, method) at a time, distilled then evaluated: an interrupted run already has
    # finished, paired sad/token results for the earliest seeds
    for student in run_students:
        for seed in run_seeds:
            for method in run_methods:
                if want("distill"):
                    _distill_stage(cfg, student, method, seed, root, stages, progress)
                if want("eval"):
                    for plan in cfg.envs:
                        _eval_stage(cfg, student, method, seed, plan, root, stages, progress)
    if want("report"):
        from sad_eval.reports.experiment_report import write_report

        digest = inputs_hash({"report": cfg.report, "v": 3},
                             sorted((root / "teacher").glob("*.jsonl")) + sorted((root / "eval").rglob("*.jsonl"))
                             + [Path(m) for m in merge])
        stages.run("report", digest, lambda: write_report(root, cfg, merge=[Path(m) for m in merge]),
                   shlex.join(["sad-eval", "report", str(root), *(a for m in merge for a in ("--merge", str(m)))]))
    stages.manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    stages.save()
    return root


def stage_command(settings: Any) -> str:
    """The `sad-eval` command line of a stage's settings: it parses back to exactly these settings
    (tests/test_settings.py), so a manifest's command reruns the stage by hand."""
    from sad_eval.distill.config import TrainConfig
    from sad_eval.options import to_argv

    if isinstance(settings, TrainConfig):
        argv = ["distill", *to_argv(settings, "distill", always=("method", "seed"))]
    else:
        argv = [settings.kind, *to_argv(settings, settings.kind, always=("split",), fixed=("kind",))]
    return shlex.join(["sad-eval", *argv])


def _rollout(settings) -> Incomplete | None:
    """Run (or resume) one trajectory file; `Incomplete` when episodes errored (env or server
    failures), so that the stage is not stamped and a rerun retries them."""
    from sad_eval.run import execute
    from sad_eval.settings import run_config
    from sad_eval.trajectory import read_trajectories

    out = settings.out
    cfg = run_config(settings)
    cfg.command = stage_command(settings)  # the trajectory file's manifest names its stage's command
    execute(cfg, progress=settings.progress)
    errored = [ep for ep in read_trajectories(out) if ep.status == "error"] if out.is_file() else []
    if errored:
        first = (errored[0].error or "unknown error").splitlines()[0][:200]
        return Incomplete(f"{len(errored)} episodes of {out.name} errored (first: {first})")
    return None


def collect_settings(cfg: ExperimentConfig, plan: EnvPlan, part: str, root: Path, progress: bool = True):
    """The teacher's run on the train split (``part`` "train": `collect`, what students learn from) or
    on the eval split ("eval": `eval`, the teacher's row of the tables)."""
    from sad_eval.agents.registry import agent_kind
    from sad_eval.settings import COLLECT, EVAL, RunSettings

    c, train = cfg.collect, part == "train"
    # collect.teacher_topk: the model teacher's top-k beside its train trajectories (--loss kl)
    topk = int(c.get("teacher_topk", 0)) if train and agent_kind(plan.teacher).generates else 0
    return RunSettings(agent=plan.teacher, env=plan.name, kind=COLLECT if train else EVAL,
                       split=plan.train_split if train else plan.eval_split,
                       n=plan.train_tasks if train else plan.eval_tasks, subset=plan.subset,
                       max_steps=None if train else plan.max_steps, out=teacher_file(root, plan.name, part),
                       batch=int(c["batch"]) if "batch" in c else None, workers=int(c.get("workers", 1)),
                       samples=int(c.get("samples", 1)) if train else 1, base_url=plan.base_url,
                       exemplars=_teacher_exemplars(plan) or None, teacher_topk=topk, progress=progress)


def _collect_stage(cfg: ExperimentConfig, plan: EnvPlan, root: Path, stages: Stages, progress: bool) -> None:
    for part in ("train", "eval"):
        s = collect_settings(cfg, plan, part, root, progress)
        # the stage's identity (kept as it was: finished stages of older runs stay finished)
        settings = {"teacher": plan.teacher, "split": s.split, "n": s.n, "samples": s.samples,
                    "max_steps": s.max_steps, "subset": plan.subset}
        if s.exemplars:  # only when set: zero-shot stages keep their digests
            settings["exemplars"] = s.exemplars
        if s.teacher_topk:
            settings["teacher_topk"] = s.teacher_topk
        stages.run(f"collect-{plan.name}-{part}", inputs_hash(settings), lambda s=s: _rollout(s), stage_command(s))


def _teacher_exemplars(plan: EnvPlan) -> str:
    """The plan's exemplars for a model teacher ("" for a scripted one, which writes no prompt)."""
    from sad_eval.agents.exemplars import parse_spec
    from sad_eval.agents.registry import agent_kind

    return parse_spec(plan.exemplars) if agent_kind(plan.teacher).generates else ""


def _student_exemplars(cfg: ExperimentConfig) -> dict[str, str]:
    from sad_eval.agents.exemplars import parse_spec

    return {p.name: parse_spec(p.exemplars) for p in cfg.envs if parse_spec(p.exemplars)}


def _distill_opts(cfg: ExperimentConfig, student: Student | None = None) -> dict[str, Any]:
    # train on exactly the contexts eval will show: same room left for the generated turn
    opts = {"reserve": cfg.max_new_tokens, **cfg.distill, **(student.distill if student else {})}
    if _student_exemplars(cfg):  # only when set: zero-shot stages keep their digests
        opts["exemplars"] = _student_exemplars(cfg)
    return opts


def _update_identity(opts: dict[str, Any]) -> dict[str, Any]:
    """The distill options that define a stage's result. Speed settings are left out, and so is the
    split of the global batch into micro-batches: batch 4 and batch 1 × grad_accum 4 take the same
    windows and make the same update (distill/trainer.py), so a run may change it to fit in memory
    and still resume. Folded into `batch_size` so configs without `grad_accum` keep their digests."""
    from sad_eval.distill.config import TrainConfig

    out = {k: v for k, v in opts.items() if k not in SPEED_ONLY}
    accum = int(out.pop("grad_accum", 1))
    if "batch_size" in out or accum != 1:
        out["batch_size"] = int(out.get("batch_size", TrainConfig.batch_size)) * accum
    return out


def distill_settings(cfg: ExperimentConfig, student: Student, method: str, seed: int, root: Path,
                     progress: bool = True, resume: bool = False):
    from sad_eval.distill.config import TrainConfig

    opts = _distill_opts(cfg, student)
    opts.setdefault("save_every", max(1, int(opts.get("max_steps", 200)) // 4))
    return TrainConfig(data=[str(teacher_file(root, p.name, "train")) for p in cfg.envs], student=student.student,
                       out=str(ckpt_dir(root, student_key(student, method, seed))), method=method, seed=seed,
                       init_from_layers=student.init_from_layers, resume=resume, progress=progress, **opts)


def _distill_stage(cfg: ExperimentConfig, student: Student, method: str, seed: int, root: Path,
                   stages: Stages, progress: bool) -> None:
    from sad_eval.distill.api import run_training

    data = [teacher_file(root, p.name, "train") for p in cfg.envs]
    key = student_key(student, method, seed)
    out = ckpt_dir(root, key)
    settings = {"student": student.identity(), "method": method, "seed": seed,
                **_update_identity(_distill_opts(cfg, student))}
    digest = inputs_hash(settings, data)
    stamp = partial_file(root, f"distill-{key}")
    # resume only a run of the same inputs; otherwise start over
    resume = _stamp_text(stamp) == digest and (out / "training_args.json").is_file()
    tc = distill_settings(cfg, student, method, seed, root, progress, resume)

    def go() -> None:
        if not tc.resume:
            shutil.rmtree(out, ignore_errors=True)
        write_text_atomic(stamp, digest)
        run_training(tc, log=lambda msg, *_: _show_warning(stages.log, msg))
        stamp.unlink(missing_ok=True)

    stages.run(f"distill-{key}", digest, go, stage_command(tc))


def eval_settings(cfg: ExperimentConfig, student: Student, method: str, seed: int, plan: EnvPlan, root: Path,
                  progress: bool = True):
    from sad_eval.settings import EVAL, RunSettings

    key, e = student_key(student, method, seed), cfg.eval
    return RunSettings(agent=str(ckpt_dir(root, key)), env=plan.name, kind=EVAL, split=plan.eval_split,
                       n=plan.eval_tasks, subset=plan.subset, max_steps=plan.max_steps,
                       out=eval_file(root, key, plan.name), seed=seed, batch=int(e.get("batch", 8)),
                       max_new_tokens=cfg.max_new_tokens, prefix_cache=bool(e.get("prefix_cache", True)),
                       vote=int(e.get("vote", 1)), workers=int(e.get("workers", 1)),
                       threads=int(e["threads"]) if e.get("threads") else None, progress=progress)


def _eval_stage(cfg: ExperimentConfig, student: Student, method: str, seed: int, plan: EnvPlan, root: Path,
                stages: Stages, progress: bool) -> None:
    key = student_key(student, method, seed)
    s = eval_settings(cfg, student, method, seed, plan, root, progress)
    settings = {"split": plan.eval_split, "n": plan.eval_tasks, "max_steps": plan.max_steps, "subset": plan.subset,
                **{k: v for k, v in cfg.eval.items() if k not in SPEED_ONLY}}
    digest = inputs_hash(settings, [ckpt_dir(root, key)])

    def go() -> Incomplete | None:
        from sad_eval.run import manifest_path

        # a changed checkpoint invalidates earlier episodes
        stamp = partial_file(root, f"eval-{key}-{plan.name}")
        if _stamp_text(stamp) != digest:
            s.out.unlink(missing_ok=True)
            manifest_path(s.out).unlink(missing_ok=True)
        write_text_atomic(stamp, digest)
        result = _rollout(s)
        if result is None:
            stamp.unlink(missing_ok=True)  # kept otherwise: the rerun resumes this file
        return result

    stages.run(f"eval-{key}-{plan.name}", digest, go, stage_command(s))


def stage_settings(cfg: ExperimentConfig, root: Path, progress: bool = True) -> dict[str, Any]:
    """{stage name: the settings it runs with} of every collect, distill and eval stage, in run order
    (a distill stage as it starts: a resumed one adds --resume)."""
    out: dict[str, Any] = {}
    for plan in cfg.envs:
        for part in ("train", "eval"):
            out[f"collect-{plan.name}-{part}"] = collect_settings(cfg, plan, part, root, progress)
    for student in cfg.students:
        for seed in cfg.seeds:
            for method in cfg.methods:
                key = student_key(student, method, seed)
                out[f"distill-{key}"] = distill_settings(cfg, student, method, seed, root, progress)
                for plan in cfg.envs:
                    out[f"eval-{key}-{plan.name}"] = eval_settings(cfg, student, method, seed, plan, root, progress)
    return out


def check_stages(cfg: ExperimentConfig, root: Path) -> None:
    """Every stage's settings, checked as its command would check them, before the first stage runs
    (a bad distill setting is found before an hour of collection, not after)."""
    from sad_eval.distill.config import TrainConfig, validate_train_config
    from sad_eval.settings import run_config

    for s in stage_settings(cfg, root).values():
        validate_train_config(s) if isinstance(s, TrainConfig) else run_config(s)
