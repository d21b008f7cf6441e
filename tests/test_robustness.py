"""Reliability and security (issue 20): each reproducer failed on the code before the fix.

Real parts throughout: real envs (HotPotQA oracle, the WebShop app), a real 2-layer model with the
real tokenizer, real flock locks, the CLI's own `main` for exit codes and error lines. A kill is
simulated by raising a BaseException at the exact point a SIGKILL would hit (deterministic, unlike
a timed signal).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

from sad_eval.agents.registry import AgentSpec
from sad_eval.errors import SadEvalError
from sad_eval.run import RunConfig, execute, manifest_path
from sad_eval.trajectory import Episode, load_trajectories, read_trajectories

TESTS = Path(__file__).parent
DISTILL_DATA = str(TESTS / "data" / "distill_teacher.jsonl")


class Killed(BaseException):
    """Stands in for SIGKILL at a chosen instruction: nothing after it runs, no handler sees it."""


def cli(capsys, *args) -> tuple[int, str, str]:
    from sad_eval.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_line_error(rc: int, err: str, needle: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert needle in lines[0], err


def hp_run(out: Path, **kw) -> list[Episode]:
    """The HotPotQA oracle on dev500 (a real env, fast, deterministic)."""
    from sad_eval.agents.experts import expert_env_kwargs

    env_kwargs = {**expert_env_kwargs("hotpotqa"), **kw.pop("env_kwargs", {})}
    cfg = RunConfig(spec=AgentSpec(agent="oracle", env="hotpotqa"), split="dev500", out=out,
                    env_kwargs=env_kwargs, **kw)
    return execute(cfg, progress=False)


# ================================================================ 2. state files written atomically


def test_atomic_write_keeps_the_old_file_when_killed_mid_write(tmp_path, monkeypatch):
    from sad_eval import statefiles

    path = tmp_path / "state.json"
    statefiles.write_json_atomic(path, {"v": 1})

    def die(fd):
        raise Killed

    monkeypatch.setattr(statefiles.os, "fsync", die)
    with pytest.raises(Killed):
        statefiles.write_json_atomic(path, {"v": 2, "big": "x" * 100_000})
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # no temp file left


def test_run_manifest_rewrite_killed_midway_leaves_the_previous_one(tmp_path, data_root, monkeypatch):
    from sad_eval import statefiles

    out = tmp_path / "hp.jsonl"
    hp_run(out, limit=1)
    before = manifest_path(out).read_text()

    def die(fd):
        raise Killed

    monkeypatch.setattr(statefiles.os, "fsync", die)
    with pytest.raises(Killed):
        hp_run(out, limit=2)
    assert manifest_path(out).read_text() == before
    monkeypatch.undo()
    assert len(hp_run(out, limit=2)) == 1  # and the resume goes on


def test_a_torn_run_manifest_is_one_line_not_a_traceback(tmp_path, data_root, capsys):
    out = tmp_path / "hp.jsonl"
    hp_run(out, limit=1)
    manifest_path(out).write_text("")  # what a kill during the old in-place rewrite left
    rc, _, err = cli(capsys, "eval", "--agent", "oracle", "--env", "hotpotqa", "-n", "1", "--out", out,
                     "--no-progress")
    one_line_error(rc, err, "is corrupt")


def test_experiment_rebuilds_a_torn_manifest_and_reruns_a_torn_stamp(tmp_path):
    from sad_eval.experiment import Stages

    root = tmp_path / "run"
    (root / "stages").mkdir(parents=True)
    (root / "manifest.json").write_text("")
    (root / "stages" / "collect.json").write_text('{"inputs": "ab')  # torn mid-write
    notes: list[str] = []
    stages = Stages(root, notes.append)
    ran = []
    assert stages.run("collect", "abc", lambda: ran.append(1), "cmd") is True
    assert ran == [1] and any("rebuilding" in n for n in notes)
    assert json.loads((root / "stages" / "collect.json").read_text())["inputs"] == "abc"
    assert json.loads((root / "manifest.json").read_text())["stages"]["collect"]["status"] == "done"
    assert Stages(root, notes.append).run("collect", "abc", lambda: ran.append(2), "cmd") is False


# ================================================================ 3. checkpoints switched in whole


@pytest.fixture
def student(tiny_student) -> str:
    return tiny_student


def _train(student: str, out: Path, **kw) -> dict:
    from sad_eval.distill.trainer import TrainConfig, train

    base = dict(data=[DISTILL_DATA], student=student, out=str(out), max_steps=6, lr=3e-3, batch_size=2,
                seq_len=256, reserve=0, eval_every=0, save_every=2, progress=False, threads=1)
    base.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(TrainConfig(**base), log=lambda *a: None)


def _weights(ckpt: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(ckpt / "model.safetensors")


@pytest.mark.parametrize("kill_at", ["trainer-state", "switch"])
def test_a_checkpoint_killed_mid_save_resumes_to_the_uninterrupted_weights(student, tmp_path, monkeypatch, kill_at):
    from sad_eval.distill import checkpoint

    _train(student, tmp_path / "full")
    real_save, real_replace = torch.save, os.replace

    def save(obj, f, *a, **k):  # the kill: while the step-4 trainer state is being written
        if kill_at == "trainer-state" and isinstance(obj, dict) and obj.get("step") == 4 and "optimizer" in obj:
            raise Killed
        return real_save(obj, f, *a, **k)

    def replace(src, dst):  # the kill: between the two renames of the step-4 switch
        if kill_at == "switch" and str(src).endswith(".ckpt-new") and _step(src) == 4:
            raise Killed
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    monkeypatch.setattr(checkpoint.os, "replace", replace)
    with pytest.raises(Killed):
        _train(student, tmp_path / "part")
    monkeypatch.undo()
    resumed = _train(student, tmp_path / "part", resume=True)
    assert resumed["start"] == (2 if kill_at == "trainer-state" else 4)
    full, part = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert all(torch.allclose(full[k], part[k], atol=1e-6) for k in full)
    steps = [json.loads(l)["step"] for l in (tmp_path / "part" / "loss_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert not list(tmp_path.glob(".part.ckpt-*"))  # staging and retired dirs are gone


def _step(ckpt) -> int | None:
    try:
        return json.loads((Path(ckpt) / "training_args.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return None


def test_trainer_state_loads_without_unpickling_objects(student, tmp_path):
    """11: resume reads the state with weights_only=True (the RNG state used to hold numpy arrays)."""
    _train(student, tmp_path / "ck", max_steps=2, save_every=0)
    state = torch.load(tmp_path / "ck" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 2 and "numpy" in state["rng"]


# ================================================================ 5. resume identity and errored episodes


def test_resume_with_another_step_cap_is_refused_naming_it(tmp_path, data_root):
    out = tmp_path / "hp.jsonl"
    hp_run(out, limit=1, env_kwargs={"max_steps": 4})
    lines, manifest = out.read_text(), manifest_path(out).read_text()
    with pytest.raises(SadEvalError, match=r"max_steps: 4 there, 6 now"):
        hp_run(out, limit=2, env_kwargs={"max_steps": 6})
    assert out.read_text() == lines and manifest_path(out).read_text() == manifest  # nothing mixed


def test_resume_with_other_chat_or_context_is_refused(tmp_path, tiny_checkpoint):
    from sad_eval.run import build_manifest, check_resume
    from sad_eval.statefiles import write_json_atomic

    def cfg(**spec):
        return RunConfig(spec=AgentSpec(agent=str(tiny_checkpoint), env="hotpotqa", **spec), split="dev500",
                         out=tmp_path / "m.jsonl")

    first = cfg()
    write_json_atomic(manifest_path(first.out), build_manifest(first, ["a"], 1))
    # a file that already holds an episode (an empty one's manifest is simply replaced)
    first.out.write_text(json.dumps(Episode(env="hotpotqa", split="dev500", task_id="a", agent="x").to_dict()) + "\n")
    check_resume(first, build_manifest(first, ["a"], 1))  # same settings: fine
    for kw, needle in (({"chat": False}, "chat: True there, False now"),
                       ({"max_context": 256}, "max_context: None there, 256 now")):
        c = cfg(**kw)
        with pytest.raises(SadEvalError, match=needle):
            check_resume(c, build_manifest(c, ["a"], 1))


def test_errored_episodes_are_retried_on_resume_unless_told_not_to(tmp_path, data_root):
    out = tmp_path / "hp.jsonl"
    hp_run(out, limit=2)
    # what a run against a server that was down leaves: the first episode recorded as errored
    recs = [json.loads(l) for l in out.read_text().splitlines()]
    recs[0].update(status="error", error="server down", success=False)
    out.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert hp_run(out, limit=2, retry_errors=False) == []  # --no-retry-errors keeps it
    again = hp_run(out, limit=2)
    assert [(e.task_id, e.status) for e in again] == [(recs[0]["task_id"], "ok")]
    eps = list(read_trajectories(out))
    assert len(eps) == 2 and all(e.status == "ok" for e in eps)
    from sad_eval.metrics import summarize

    assert summarize(load_trajectories([out]))["episodes"] == 2


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_eval_against_a_dead_server_says_so_and_exits_non_zero(tmp_path, data_root, capsys):
    out = tmp_path / "ws.jsonl"
    rc, _, err = cli(capsys, "eval", "--agent", "oracle", "--env", "webshop", "-n", "1", "--out", out,
                     "--server-url", f"http://127.0.0.1:{_dead_port()}", "--no-progress")
    one_line_error(rc, err, "all 1 episodes errored")


def test_an_experiment_stage_with_errored_episodes_is_not_stamped(tmp_path):
    from sad_eval.experiment import Incomplete, Stages

    root = tmp_path / "run"
    notes: list[str] = []
    stages = Stages(root, notes.append)
    assert stages.run("eval-x", "d", lambda: Incomplete("2 episodes of x.jsonl errored"), "cmd") is True
    assert not (root / "stages" / "eval-x.json").exists() and any("incomplete" in n for n in notes)
    assert json.loads((root / "manifest.json").read_text())["stages"]["eval-x"]["status"] == "incomplete"
    ran = []
    assert Stages(root, notes.append).run("eval-x", "d", lambda: ran.append(1), "cmd") is True and ran == [1]


# ================================================================ 6. one writer per output file


def test_a_second_writer_is_refused_while_the_first_runs(tmp_path, data_root):
    from sad_eval.statefiles import FileLock

    out = tmp_path / "hp.jsonl"
    with FileLock(out, "sad-eval run"):  # another process's run holds the file (flock is per open file)
        with pytest.raises(SadEvalError, match="being written by another sad-eval run"):
            hp_run(out, limit=1)
    assert not out.exists()
    assert len(hp_run(out, limit=1)) == 1  # the lock goes with its holder


def test_two_concurrent_cli_runs_on_one_file_leave_no_duplicates(tmp_path, data_root):
    out = tmp_path / "hp.jsonl"
    cmd = [sys.executable, "-m", "sad_eval.cli", "eval", "--agent", "oracle", "--env", "hotpotqa", "-n", "12",
           "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    results = [(p.wait(300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    ids = [e.task_id for e in read_trajectories(out)]
    assert len(ids) == len(set(ids)) == 12
    if codes == [0, 2]:  # they overlapped: the second got one clear line
        assert any("being written by another" in err for rc, err in results if rc == 2)
    else:  # one finished before the other started: the second resumed and added nothing
        assert codes == [0, 0]


def test_duplicate_records_are_counted_once_with_a_warning(tmp_path, sample_path):
    from sad_eval.metrics import summarize

    dup = tmp_path / "dup.jsonl"
    dup.write_text(sample_path.read_text() * 2)  # what two writers used to leave
    with pytest.warns(UserWarning, match="duplicate"):
        eps = load_trajectories([dup])
    assert len(eps) == len(load_trajectories([sample_path]))
    assert summarize(eps)["episodes"] == len(eps)


# ================================================================ 4. data install stays inside its trees


def _source(tmp_path: Path, entries: dict[str, bytes]) -> Path:
    import hashlib

    src = tmp_path / "src"
    src.mkdir()
    lines = []
    for rel, content in entries.items():
        p = (src / rel) if not os.path.isabs(rel) else Path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        lines.append(f"{hashlib.sha256(content).hexdigest()}  {rel}")
    (src / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return src


def test_data_install_refuses_entries_outside_the_trees_before_touching_anything(tmp_path):
    from sad_eval import data

    victim = tmp_path / "victim.txt"  # a file outside source and destination
    src = _source(tmp_path, {"react/a.json": b"{}", str(victim): b"precious"})
    dest = tmp_path / "root"
    with pytest.raises(SadEvalError, match="refusing entry"):
        data.install(src, dest, log=lambda *a: None)
    assert victim.read_bytes() == b"precious" and not dest.exists()

    src2 = tmp_path / "two"
    src2.mkdir()
    (tmp_path / "outside.json").write_bytes(b"{}")
    import hashlib

    (src2 / "SHA256SUMS").write_text(f"{hashlib.sha256(b'{}').hexdigest()}  ../outside.json\n")
    with pytest.raises(SadEvalError, match="refusing entry"):
        data.install(src2, tmp_path / "deep" / "root", log=lambda *a: None)
    assert not (tmp_path / "deep").exists()


# ================================================================ 9. error lines are text, not markup


@pytest.mark.parametrize("args,shown", [
    (["--agent", "openai:m", "--base-url", "ftp://x[/v1]"], "ftp://x[/v1]"),
    (["--agent", "oracle", "--tasks", "[/x]"], "[/x]"),
    (["--agent", "oracle", "--tasks", "a[b]c"], "a[b]c"),
])
def test_error_lines_print_user_text_as_it_is(args, shown, data_root, capsys, tmp_path):
    rc, _, err = cli(capsys, "eval", "--env", "hotpotqa", *args, "--out", tmp_path / "x.jsonl", "--no-progress")
    one_line_error(rc, err, shown)


def test_base_url_credentials_are_redacted_in_errors_and_manifests(capsys, tmp_path, data_root):
    from sad_eval.run import build_manifest

    rc, _, err = cli(capsys, "eval", "--env", "hotpotqa", "--agent", "openai:m", "--base-url",
                     "ftp://alice:s3cret@x/v1", "--out", tmp_path / "x.jsonl")
    assert rc == 2 and "s3cret" not in err and "***@x" in err
    cfg = RunConfig(spec=AgentSpec(agent="openai:m", env="hotpotqa", base_url="http://alice:s3cret@h:1/v1"),
                    split="dev500", out=tmp_path / "m.jsonl")
    assert "s3cret" not in json.dumps(build_manifest(cfg, ["a"], 1))


# ================================================================ 10. edge inputs: one line, exit 2


@pytest.mark.parametrize("args,needle", [
    (["-n", "0"], "-n must be at least 1"),
    (["-n", "-1"], "-n must be at least 1"),
    (["--temperature", "-1"], "--temperature must be >= 0"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    (["--tasks", "@{binary}"], "is not UTF-8"),
])
def test_eval_edge_inputs(args, needle, tmp_path, capsys, data_root):
    binary = tmp_path / "tasks.bin"
    binary.write_bytes(bytes(range(256)))
    args = [a.format(binary=binary) for a in args]
    rc, _, err = cli(capsys, "eval", "--agent", "oracle", "--env", "hotpotqa", *args, "--out", tmp_path / "x.jsonl",
                     "--no-progress")
    one_line_error(rc, err, needle)
    assert not (tmp_path / "x.jsonl").exists()


def test_distill_edge_inputs(tmp_path, capsys, smol_tokenizer):
    from transformers import AutoModelForCausalLM

    from sad_eval.distill.students import llama_config

    bare = tmp_path / "no-tokenizer"
    AutoModelForCausalLM.from_config(llama_config(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                                  num_key_value_heads=1, intermediate_size=64)).save_pretrained(bare)
    rc, _, err = cli(capsys, "distill", "--data", DISTILL_DATA, "--student", bare, "--out", tmp_path / "o",
                     "--max-steps", "1", "--threads", "1")
    one_line_error(rc, err, "no usable tokenizer")
    taken = tmp_path / "a-file"
    taken.write_text("keep me")
    rc, _, err = cli(capsys, "distill", "--data", DISTILL_DATA, "--student", "tiny", "--out", taken)
    one_line_error(rc, err, "is a file")
    assert taken.read_text() == "keep me"


def test_serve_webshop_on_a_busy_port(capsys, data_root):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        rc, _, err = cli(capsys, "serve", "webshop", "--port", s.getsockname()[1])
    one_line_error(rc, err, "cannot listen on 127.0.0.1")


@pytest.mark.parametrize("text,needle", [
    (b"name: x\nenvs: [hotpotqa]\nstudents: [tiny]\n", "envs must be a mapping"),
    (b"name: x\nenvs: {hotpotqa: {eval_tasks: many}}\nstudents: [tiny]\n", "eval_tasks must be a positive integer"),
    (b"name: x\nenvs: {hotpotqa: {}}\nstudents: [tiny]\neval: {max_new_tokens: lots}\n", "eval.max_new_tokens"),
    (b"name: x\nenvs: {hotpotqa: {}}\nstudents: [tiny]\ndistill: {lr: fast}\n", "distill.lr must be float"),
    (b"name: x\nenvs: {hotpotqa: {}}\nstudents: [{name: a, size: 3}]\n", "students[0]"),
    (b"name: \xff\xfe\nenvs: {}\n", "not UTF-8"),
    (b"- 1\n- 2\n", "the config must be a mapping"),
])
def test_experiment_config_with_wrong_types_or_bytes(text, needle, tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_bytes(text)
    rc, _, err = cli(capsys, "experiment", cfg, "--out", tmp_path / "run")
    one_line_error(rc, err, needle)


def test_report_merge_of_a_binary_file(tmp_path, capsys):
    import shutil

    root = tmp_path / "run"
    root.mkdir()
    shutil.copyfile(TESTS / "data" / "micro.yaml", root / "config.yaml")
    junk = tmp_path / "junk.csv"
    junk.write_bytes(bytes(range(256)) * 4)
    rc, _, err = cli(capsys, "report", root, "--merge", junk)
    one_line_error(rc, err, "not a results_long.csv")


def test_metrics_strict_refuses_invalid_utf8(tmp_path, capsys, sample_path):
    bad = tmp_path / "bad.jsonl"
    first = sample_path.read_bytes().splitlines()[0]
    bad.write_bytes(first.replace(b'"prompt": "', b'"prompt": "\xff', 1) + b"\n")
    rc, _, err = cli(capsys, "metrics", bad, "--strict")
    one_line_error(rc, err, "not UTF-8")


# ================================================================ 11. minor: temp dirs, session ids


def test_webshop_session_ids_are_a_function_of_the_job():
    from sad_eval.envs.webshop.env import session_id_for

    assert session_id_for("fixed_3", 0, 0) == session_id_for("fixed_3", 0, 0)
    assert len({session_id_for("fixed_3", 0, k) for k in range(4)}) == 4
    assert session_id_for("fixed_3", 0).endswith("_fixed_3")


def test_two_identical_webshop_runs_write_identical_jsonl_and_leave_no_temp_dirs(tmp_path, data_root,
                                                                                  monkeypatch):
    import tempfile

    from sad_eval.agents.experts import expert_env_kwargs

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # where the env puts its server's folder
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.jsonl"
        cfg = RunConfig(spec=AgentSpec(agent="oracle", env="webshop"), split="test", out=out, limit=2, batch=2,
                        subset="first",
                        env_kwargs=expert_env_kwargs("webshop"))
        execute(cfg, progress=False)
        outs.append([{k: v for k, v in json.loads(l).items() if k != "wall_s"}
                     | {"steps": [{**s, "latency_s": 0} for s in json.loads(l)["steps"]]}
                     for l in out.read_text().splitlines()])
    assert outs[0] == outs[1]
    assert sorted(o["meta"]["session_id"].split("_", 1)[1] for o in outs[0]) == ["fixed_0", "fixed_1"]
    assert list(tmp.iterdir()) == []


# ================================================================ 8. WebShop server input


@pytest.fixture(scope="module")
def shop_app(data_root):
    from sad_eval.envs.webshop.server import build_shop, create_app

    return create_app(build_shop(data_root))


@pytest.mark.parametrize("page", ["¹", "²", "①", "٣"])
def test_webshop_non_ascii_digit_pages_are_400(shop_app, page):
    from urllib.parse import quote

    c = shop_app.test_client()
    assert c.get("/fixed_1").status_code == 200
    r = c.get(f"/search_results/fixed_1/{quote(repr(['shoe']))}/{quote(page)}")
    assert r.status_code == 400 and b"bad page number" in r.data


def test_webshop_session_id_with_a_trailing_newline_is_refused(shop_app):
    r = shop_app.test_client().get("/abc%0A")
    assert r.status_code == 400 and b"bad session id" in r.data


def test_webshop_refuses_a_huge_body_before_reading_it(shop_app):
    from sad_eval.envs.webshop.server import MAX_BODY, create_wsgi_server

    httpd = create_wsgi_server(shop_app, "127.0.0.1", 0, threads=2)

    def run() -> None:
        try:
            httpd.run()
        except OSError:  # close() from this thread pulls the socket out from under select()
            pass

    threading.Thread(target=run, daemon=True).start()
    try:
        with socket.create_connection(("127.0.0.1", httpd.effective_port), timeout=10) as s:
            # announce 100 MB, send a few bytes: the answer must come without the rest
            s.sendall(b"POST /fixed_1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                      b"Content-Length: 104857600\r\n\r\nsearch_query=")
            status = s.recv(200).split(b"\r\n", 1)[0]
        assert b"413" in status, status
        r = shop_app.test_client().post("/fixed_1", data={"search_query": "x" * (MAX_BODY + 1)})
        assert r.status_code == 413
    finally:
        httpd.close()


# ================================================================ 7. the model server's request parser


@pytest.fixture(scope="module")
def model_client(tiny_checkpoint):
    from sad_eval.agents.serve_model import build

    app, server = build(str(tiny_checkpoint), name="tiny", max_batch=2)
    yield app.test_client(), server
    server.close()


CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "temperature": 0}


def _post(client, path, body):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json")


def test_a_huge_prompt_is_413_at_once_and_holds_no_lock(model_client):
    client, server = model_client
    t0 = time.perf_counter()
    r = _post(client, "/v1/completions", {"model": "tiny", "prompt": "word " * 1_580_000, "max_tokens": 1})
    assert r.status_code == 413 and "characters" in r.get_json()["error"]["message"]
    assert time.perf_counter() - t0 < 5  # refused before tokenising (it used to take ~29 s)
    r = _post(client, "/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "x" * 10**6}]})
    assert r.status_code == 413
    assert not hasattr(server, "_tok_lock")  # no lock shared by request threads
    toks = []
    t = threading.Thread(target=lambda: toks.append(server._tok()))
    t.start()
    t.join(60)
    assert toks and toks[0] is not server._tok()  # each thread tokenises with its own


@pytest.mark.parametrize("body,status,needle", [
    ('{"model": "tiny", "messages": [{"role": "user", "content": "\\ud800"}], "max_tokens": 2}', 400, "surrogate"),
    ('{"model": "tiny", "prompt": "a\\udfff", "max_tokens": 2}', 400, "surrogate"),
    ("[" * 100_000 + "]" * 100_000, 400, "nests deeper"),
    ('{"model": "tiny", "prompt": ""}', 400, "must not be empty"),
    ('{"model": "tiny", "prompt": ["ok", ""]}', 400, "must not be empty"),
    ('{"model": "tiny", "prompt": "x", "logprobs": 99}', 400, "logprobs"),  # implemented, up to 20
    ('{"model": "tiny", "prompt": "x", "echo": true}', 400, "'echo' is not supported"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}', 400,
     "'tools' is not supported"),
])
def test_model_server_bad_inputs_are_4xx(model_client, body, status, needle):
    client, _ = model_client
    path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    r = _post(client, path, body)
    assert r.status_code == status, r.get_data(as_text=True)[:300]
    assert needle in r.get_json()["error"]["message"]


def test_model_server_still_accepts_default_valued_fields(model_client):
    client, _ = model_client
    r = _post(client, "/v1/chat/completions", {**CHAT, "logprobs": False, "tools": [], "presence_penalty": 0})
    assert r.status_code == 200 and r.get_json()["choices"][0]["message"]["role"] == "assistant"


def test_wiki_index_never_unpickles_a_planted_cache_file(tmp_path, monkeypatch, data_root):
    """11: a cache folder from an older version (or planted) holds pickles; they are never loaded."""
    import pickle
    import shutil

    from sad_eval.envs import wiki_store

    real = wiki_store.ensure_index(data_root)
    monkeypatch.setenv("SAD_EVAL_DATA", str(data_root))
    monkeypatch.setenv("SAD_EVAL_CACHE", str(tmp_path / "cache"))
    fake = wiki_store.index_root() / real.name
    fake.mkdir(parents=True)
    shutil.copytree(real / "bm25", fake / "bm25")
    shutil.copyfile(real / "meta.json", fake / "meta.json")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name in ("pages.pkl", "questions.pkl"):
        (fake / name).write_bytes(pickle.dumps(Evil()))
    store = wiki_store.load_index(wiki_store.ensure_index(data_root))
    assert not marker.exists()
    assert len(store.titles) == len(wiki_store.load_index(real).titles) > 30_000
