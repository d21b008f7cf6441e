"""The whole experiment pipeline on a micro config: collect -> distill -> eval -> report."""

import json
import shutil
from pathlib import Path

import pytest

from sad_eval.errors import SadEvalError
from sad_eval.experiment import load_config, run_experiment

MICRO = Path(__file__).parent / "data" / "micro.yaml"


RAN_WITH: dict = {}  # output path -> the settings object a stage of the micro run ran with


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory, data_root, smol_tokenizer):
    """The micro config run once; every stage's settings recorded as the runner received them."""
    import sad_eval.distill.api
    import sad_eval.settings

    root = tmp_path_factory.mktemp("exp") / "micro"
    logs = []
    real_config, real_train = sad_eval.settings.run_config, sad_eval.distill.api.run_training

    def run_config(s, policy=None):
        RAN_WITH[str(s.out)] = s
        return real_config(s, policy)

    def run_training(cfg, log=None):
        RAN_WITH[cfg.out] = cfg
        return real_train(cfg, log)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sad_eval.settings, "run_config", run_config)
        mp.setattr(sad_eval.distill.api, "run_training", run_training)
        run_experiment(MICRO, root, log=logs.append, progress=False)
    return root, logs


def test_every_stage_command_parses_to_the_settings_the_stage_ran_with(micro_run):
    """manifest.json's commands are real commands: the CLI's own parser turns each into exactly the
    settings object its stage ran with (so pasting one reruns that stage)."""
    import shlex

    from sad_eval.cli import parse_settings

    root, _ = micro_run
    stages = json.loads((root / "manifest.json").read_text())["stages"]
    checked = 0
    for name, entry in stages.items():
        if name == "report":
            assert shlex.split(entry["command"])[:3] == ["sad-eval", "report", str(root)]
            continue
        parsed = parse_settings(shlex.split(entry["command"]))
        assert parsed == RAN_WITH[str(parsed.out)], name
        checked += 1
    assert checked == 6 + 2 + 6
    # the teacher's capped ALFWorld eval says its cap; the threads travel as an option
    assert "--max-steps 3" in stages["collect-alfworld-eval"]["command"]
    assert "--threads 1" in stages["eval-tiny-sad-s0-webshop"]["command"]


def test_all_stages_run_and_report_has_expected_rows_and_columns(micro_run):
    root, logs = micro_run
    assert sum("run" in str(l) for l in logs) == 6 + 2 + 6 + 1
    table = (root / "report" / "table3.md").read_text()
    for row in ("teacher", "sad (tiny)", "token (tiny)"):
        assert f"| {row} |" in table
    for col in ("alfworld TSR", "webshop ARL", "hotpotqa CoT", "hotpotqa Lat."):
        assert col in table
    report = (root / "report" / "report.md").read_text()
    assert "Table 3" in report and "sad-eval distill" in report and "sad-eval eval --agent" in report
    assert (root / "report" / "table3.tex").read_text().startswith("\\begin{tabular}")
    html = (root / "report" / "masks.html").read_text()
    assert 'class="tok r"' in html and 'class="tok a"' in html
    # the micro budget (16 tokens) is shorter than the teacher's turns: distill says so
    assert any("warning: distill:" in str(l) and "16-token generation budget" in str(l) for l in logs)
    manifest = json.loads((root / "manifest.json").read_text())
    assert all(s["status"] == "done" for s in manifest["stages"].values())


def test_figures_are_valid_pngs_of_nontrivial_size(micro_run):
    root, _ = micro_run
    for name in ("figure2.png", "figure8.png"):
        data = (root / "report" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_rerun_skips_unchanged_stages(micro_run):
    root, _ = micro_run
    logs = []
    # another thread or eval-process count is a speed setting, not a new experiment
    run_experiment(MICRO, root, log=logs.append, progress=False, threads=2, eval_workers=2)
    assert logs and all("skip" in str(l) for l in logs)


def test_splitting_the_batch_into_micro_batches_keeps_the_distill_stages(micro_run, tmp_path):
    """batch 2 and batch 1 x grad_accum 2 make the same update: a run that changes the split to fit
    in memory resumes; a new global batch is a new experiment."""
    root, _ = micro_run
    text = MICRO.read_text()
    assert "batch_size: 2," in text
    split = tmp_path / "micro.yaml"
    split.write_text(text.replace("batch_size: 2,", "batch_size: 1, grad_accum: 2,"))
    logs = []
    run_experiment(split, root, log=logs.append, progress=False, stages_only=("distill",))
    assert logs and all("skip" in str(l) for l in logs)
    bigger = tmp_path / "micro-b4.yaml"
    bigger.write_text(text.replace("batch_size: 2,", "batch_size: 2, grad_accum: 2,"))
    from sad_eval.experiment import _distill_opts, _update_identity

    assert (_update_identity(_distill_opts(load_config(bigger)))["batch_size"]
            != _update_identity(_distill_opts(load_config(split)))["batch_size"])


def test_a_student_may_override_distill_settings(micro_run, tmp_path):
    """A learning-rate sweep as students of one study: the override reaches that student's
    training only, and the students without one keep their stages."""
    from sad_eval.experiment import stage_settings

    root, _ = micro_run
    text = MICRO.read_text()
    swept = tmp_path / "micro.yaml"
    swept.write_text(text.replace("  - {name: tiny, student: tiny}",
                                  "  - {name: tiny, student: tiny}\n"
                                  "  - {name: tiny-lr, student: tiny, distill: {lr: 0.002, threads: 1}}"))
    cfg = load_config(swept)
    settings = stage_settings(cfg, root)
    assert settings["distill-tiny-sad-s0"].lr == 0.001 and settings["distill-tiny-lr-sad-s0"].lr == 0.002
    logs = []
    run_experiment(swept, root, log=logs.append, progress=False, stages_only=("distill",), only_students=("tiny",))
    assert logs and all("skip" in str(l) for l in logs)
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("{name: tiny, student: tiny}", "{name: tiny, student: tiny, distill: {lr: fast}}"))
    with pytest.raises(SadEvalError, match=r"students\[0\]\.distill\.lr must be float"):
        load_config(bad)


def test_shard_options_take_commas_or_repeats(micro_run, capsys):
    from sad_eval.cli import main

    root, _ = micro_run
    assert main(["experiment", str(MICRO), "--out", str(root), "--no-progress", "--stage", "distill,eval",
                 "--methods", "sad,token", "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    assert "skip distill-tiny-sad-s0" in out and "skip eval-tiny-token-s0-webshop" in out and "run " not in out
    assert main(["experiment", str(MICRO), "--out", str(root), "--seeds", "0,x"]) == 2
    assert "--seeds takes integers" in capsys.readouterr().err


def test_paired_table_has_a_row_per_student_and_a_seed_count(micro_run):
    root, _ = micro_run
    paired = (root / "report" / "paired.md").read_text()
    assert "| sad − token (tiny) |" in paired and "hotpotqa ΔCoT" in paired and "alfworld seeds" in paired
    assert "webshop ΔNoAct" in paired
    by_task = (root / "report" / "paired_tasks.md").read_text()
    assert "| sad − token (tiny) |" in by_task and "webshop wins / losses" in by_task
    assert "hotpotqa tasks × seeds" in by_task and " 2 × 1 " in by_task  # micro: 2 eval tasks, 1 seed


def test_results_split_invalid_turns_by_the_configs_token_budget(micro_run):
    import pandas as pd

    root, _ = micro_run
    df = pd.read_csv(root / "report" / "results_long.csv")
    students = df[df["method"] != "teacher"]
    assert students["no_action_rate"].notna().all()
    total = students["runaway_rate"] + students["no_action_rate"]
    assert ((total - students["invalid_rate"]).abs() < 1e-9).all()


def test_paired_differences_are_per_seed_means_with_intervals():
    import pandas as pd

    from sad_eval.reports.experiment_report import paired

    rows = []
    for seed, (a, b) in enumerate([(50.0, 40.0), (60.0, 40.0), (40.0, 40.0)]):
        for method, tsr in (("sad", a), ("token", b)):
            rows.append({"student": "tiny", "method": method, "seed": seed, "env": "webshop", "tsr": tsr,
                         "arl": 10.0, "cot_match": 1.0, "latency_steps": 3.0})
    table = paired(pd.DataFrame(rows), ["webshop"])
    # diffs 10, 20, 0: mean 10, sd 10, t(2)=4.303 -> half-width 4.303 * 10 / sqrt(3) = 24.8
    assert table.loc["sad − token (tiny)", "webshop ΔTSR"] == "10.0 ± 24.8"
    assert table.loc["sad − token (tiny)", "webshop ΔARL"] == "0.0 ± 0.0"
    assert table.loc["sad − token (tiny)", "webshop seeds"] == "3"


def test_interrupted_eval_is_left_out_of_the_tables(micro_run, tmp_path):
    from sad_eval.reports.experiment_report import results

    src, _ = micro_run
    root = tmp_path / "copy"
    shutil.copytree(src, root)
    full = results(root, load_config(MICRO))
    (root / "stages" / "eval-tiny-sad-s0-webshop.partial").write_text("x")
    part = results(root, load_config(MICRO))
    assert len(part) == len(full) - 1
    assert not ((part["method"] == "sad") & (part["env"] == "webshop")).any()


def test_interrupted_eval_stage_resumes_without_duplicates(micro_run, tmp_path, monkeypatch):
    src, _ = micro_run
    root = tmp_path / "copy"
    shutil.copytree(src, root)
    target = root / "eval" / "tiny-sad-s0" / "hotpotqa.jsonl"
    target.unlink()
    (root / "stages" / "eval-tiny-sad-s0-hotpotqa.json").unlink()

    from sad_eval.trajectory import TrajectoryWriter

    real_write = TrajectoryWriter.write
    calls = {"n": 0}

    def crash_after_one(self, ep):
        if calls["n"] == 1:
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-stage
        calls["n"] += 1
        real_write(self, ep)

    monkeypatch.setattr(TrajectoryWriter, "write", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(MICRO, root, log=lambda *a: None, progress=False)
    assert len(target.read_text().splitlines()) == 1
    monkeypatch.setattr(TrajectoryWriter, "write", real_write)
    logs = []
    run_experiment(MICRO, root, log=logs.append, progress=False)
    ran = [str(l) for l in logs if "run" in str(l)]
    assert any("eval-tiny-sad-s0-hotpotqa" in l for l in ran) and len(ran) == 2  # that stage + report
    ids = [json.loads(l)["task_id"] for l in target.read_text().splitlines()]
    assert len(ids) == 2 and len(set(ids)) == 2


def test_bad_configs_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("envs: {minecraft: {}}\nstudents: [tiny]\n")
    with pytest.raises(SadEvalError, match="unknown env 'minecraft'"):
        load_config(bad)
    bad.write_text("envs: {hotpotqa: {}}\nstudents: [tiny]\nmethods: [magic]\n")
    with pytest.raises(SadEvalError, match="unknown methods"):
        load_config(bad)
    bad.write_text("envs: {hotpotqa: {}}\nstudents: [tiny]\nepochs: 3\n")
    with pytest.raises(SadEvalError, match="unknown keys"):
        load_config(bad)
    with pytest.raises(SadEvalError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_shards_merge_into_one_table(micro_run, tmp_path):
    """A second shard (here: the same students under seed 1) joins through its results_long.csv."""
    import pandas as pd

    from sad_eval.reports.experiment_report import write_report

    src, _ = micro_run
    root = tmp_path / "copy"
    shutil.copytree(src, root)
    own = pd.read_csv(src / "report" / "results_long.csv")
    other = own[own["method"] != "teacher"].assign(seed=1)
    other["tsr"] = other["tsr"] + 10.0
    other.to_csv(tmp_path / "shard.csv", index=False)
    write_report(root, load_config(MICRO), merge=[tmp_path / "shard.csv"])
    merged = pd.read_csv(root / "report" / "results_long.csv")
    assert len(merged) == len(own) + len(other)
    assert sorted(merged.loc[merged["method"] == "sad", "seed"].unique()) == [0, 1]
    assert (root / "report" / "paired.md").read_text().rstrip().endswith("| 2 |")
    assert " ± " in (root / "report" / "table3.md").read_text()  # two seeds: intervals appear
    # merging again is idempotent: the run's own rows and the shard's rows are keyed, not appended
    write_report(root, load_config(MICRO), merge=[tmp_path / "shard.csv", root / "report" / "results_long.csv"])
    assert len(pd.read_csv(root / "report" / "results_long.csv")) == len(merged)


def test_a_shards_episodes_join_the_paired_by_task_table(micro_run, tmp_path):
    """A shard whose checkpoints are gone (another session) still pairs by task: its
    report/episodes.csv carries one row per episode, and the run's own episodes win on overlap."""
    import pandas as pd

    from sad_eval.reports.experiment_report import write_report

    src, _ = micro_run
    root = tmp_path / "copy"
    shutil.copytree(src, root)
    own = pd.read_csv(src / "report" / "episodes.csv", dtype={"task_id": str})
    assert len(own) == 2 * (1 + 2 + 2) and set(own["method"]) == {"sad", "token"}  # 2 methods × 5 eval tasks
    # seed 1: sad solves every webshop task, token none, so only the merged seed decides the sign
    shard = own.assign(seed=1)
    shard.loc[shard["env"] == "webshop", "success"] = (shard["method"] == "sad").astype(int)
    shard.to_csv(tmp_path / "episodes.csv", index=False)
    # a stale copy of seed 0 in the shard must not replace this run's own seed-0 episodes
    stale = own.assign(success=1 - own["success"])
    stale.to_csv(tmp_path / "stale.csv", index=False)
    write_report(root, load_config(MICRO), merge=[tmp_path / "episodes.csv", tmp_path / "stale.csv"])
    by_task = pd.read_csv(root / "report" / "paired_tasks.csv", index_col=0, dtype=str)
    row = by_task.loc["sad − token (tiny)"]
    assert row["webshop tasks × seeds"] == "2 × 2" and row["hotpotqa tasks × seeds"] == "2 × 2"
    w0 = own[own["env"] == "webshop"].pivot(index="task_id", columns="method", values="success")
    wins0, losses0 = int(((w0["sad"] == 1) & (w0["token"] == 0)).sum()), int(((w0["token"] == 1) & (w0["sad"] == 0)).sum())
    assert row["webshop wins / losses"] == f"{wins0 + 2} / {losses0}"
    # the report's own episodes.csv stays this run's (no merged rows): merging it again is idempotent
    assert len(pd.read_csv(root / "report" / "episodes.csv")) == len(own)
    with pytest.raises(SadEvalError, match="not a results_long.csv or episodes.csv"):
        bad = tmp_path / "bad.csv"
        bad.write_text("task_id,success\nx,1\n")
        write_report(root, load_config(MICRO), merge=[bad])


def test_shard_selection_and_merge_errors_are_clear(tmp_path):
    with pytest.raises(SadEvalError, match=r"unknown student\(s\) \['huge'\]"):
        run_experiment(MICRO, tmp_path / "r", only_students=("huge",), progress=False, log=lambda *a: None)
    with pytest.raises(SadEvalError, match=r"unknown method\(s\) \['magic'\]"):
        run_experiment(MICRO, tmp_path / "r", only_methods=("magic",), progress=False, log=lambda *a: None)
    with pytest.raises(SadEvalError, match="no such results file"):
        run_experiment(MICRO, tmp_path / "r", merge=(tmp_path / "none.csv",), progress=False, log=lambda *a: None)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    from sad_eval.reports.experiment_report import merge_results

    with pytest.raises(SadEvalError, match="not a results_long.csv"):
        merge_results(__import__("pandas").DataFrame(), [bad], load_config(MICRO))


def test_eval_workers_reach_the_eval_stage_command(tmp_path):
    """eval.workers (or --eval-workers) runs each student's eval in that many processes; the stage's
    command says so, and the command parses back to the same settings."""
    import shlex

    from sad_eval.cli import parse_settings
    from sad_eval.experiment import eval_settings, stage_command

    cfg_path = tmp_path / "w.yaml"
    cfg_path.write_text(MICRO.read_text().replace("eval: {batch: 4,", "eval: {workers: 2, batch: 4,"))
    cfg = load_config(cfg_path)
    s = eval_settings(cfg, cfg.students[0], "sad", 0, cfg.envs[0], tmp_path)
    assert s.workers == 2
    command = stage_command(s)
    assert "--workers 2" in command and parse_settings(shlex.split(command)) == s
