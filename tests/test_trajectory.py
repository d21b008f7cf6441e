import json

import pytest

from sad_eval.errors import SadEvalError
from sad_eval.trajectory import Episode, Step, TrajectoryWriter, read_trajectories, recorded_keys


def make(i):
    return Episode("alfworld", "valid_unseen", f"task{i}", "expert", steps=[Step("r", "a", "o")])


def test_roundtrip_and_format_field(tmp_path):
    p = tmp_path / "run.jsonl"
    with TrajectoryWriter(p) as w:
        for i in range(3):
            w.write(make(i))
    lines = p.read_text().splitlines()
    assert json.loads(lines[0])["format"] == "sad-eval/trajectory@1"
    eps = list(read_trajectories(p))
    assert [e.task_id for e in eps] == ["task0", "task1", "task2"]
    assert eps[0].steps[0] == Step("r", "a", "o")


def test_truncated_last_line_and_garbage_are_skipped_with_warning(tmp_path):
    p = tmp_path / "run.jsonl"
    with TrajectoryWriter(p) as w:
        w.write(make(0))
        w.write(make(1))
    with open(p, "a") as f:
        f.write("this is not json\n")
        f.write(json.dumps(make(2).to_dict())[:40])  # torn write, no newline
    with pytest.warns(UserWarning) as caught:
        eps = list(read_trajectories(p))
    assert [str(w.message).split(": skipped")[0].rsplit(":", 1)[1] for w in caught] == ["3", "4"]
    assert [e.task_id for e in eps] == ["task0", "task1"]
    with pytest.raises(SadEvalError, match=r"run\.jsonl:3"):
        list(read_trajectories(p, strict=True))


def test_writer_after_torn_line_starts_a_fresh_line(tmp_path):
    p = tmp_path / "run.jsonl"
    p.write_text(json.dumps(make(0).to_dict()) + "\n" + '{"format": "sad-eval/traj')
    with TrajectoryWriter(p) as w:
        w.write(make(1))
    with pytest.warns(UserWarning):
        keys = {e.task_id for e in read_trajectories(p)}
    assert keys == {"task0", "task1"}
    assert recorded_keys(p) == {("task0", 0), ("task1", 0)}


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SadEvalError, match="not found"):
        list(read_trajectories(tmp_path / "nope.jsonl"))
