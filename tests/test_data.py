import hashlib

import pytest

from sad_eval import data
from sad_eval.envs import data_status  # each env's rows (its spec) and the shared ones
from sad_eval.errors import SadEvalError


def make_source(tmp_path, files):
    src = tmp_path / "src"
    lines = []
    for rel, content in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        lines.append(f"{hashlib.sha256(content).hexdigest()}  ./{rel}")
    (src / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return src


def test_install_copies_and_verifies_and_is_idempotent(tmp_path):
    src = make_source(tmp_path, {"react/a.json": b"{}", "webshop/b.jsonl": b'{"id": 1}\n'})
    dest = data.install(src, tmp_path / "root", log=lambda *a: None)
    assert (dest / "react/a.json").read_bytes() == b"{}"
    msgs = []
    data.install(src, dest, log=msgs.append)
    assert "already installed" in msgs[0]


def test_checksum_mismatch_is_refused(tmp_path):
    src = make_source(tmp_path, {"react/a.json": b"{}"})
    (src / "react/a.json").write_bytes(b"tampered")
    with pytest.raises(SadEvalError, match="checksum mismatch: react/a.json"):
        data.install(src, tmp_path / "root", log=lambda *a: None)
    assert not (tmp_path / "root" / "react").exists()


def test_missing_file_is_refused(tmp_path):
    src = make_source(tmp_path, {"react/a.json": b"{}", "react/b.json": b"[]"})
    (src / "react/b.json").unlink()
    with pytest.raises(SadEvalError, match="missing file: react/b.json"):
        data.install(src, tmp_path / "root", log=lambda *a: None)


def test_link_mode_and_status_counts(tmp_path):
    src = make_source(tmp_path, {"react/a.json": b"{}", "webshop/items_1k_documents.jsonl": b'{"id":1}\n{"id":2}\n'})
    dest = data.install(src, tmp_path / "root", link=True, log=lambda *a: None)
    assert (dest / "react/a.json").is_symlink()
    rows = {(r.dataset, r.split): r for r in data_status(dest)}
    assert rows[("webshop", "catalogue")].items == 2 and rows[("webshop", "catalogue")].present
    assert not rows[("alfworld", "valid_unseen")].present


def test_require_names_the_install_command(tmp_path):
    with pytest.raises(SadEvalError, match="sad-eval data install"):
        data.require("alfworld/json_2.1.1", tmp_path)


def test_real_data_status(data_root):
    rows = {(r.dataset, r.split): r.items for r in data_status(data_root)}
    assert rows[("alfworld", "valid_unseen")] == 134
    assert rows[("webshop", "catalogue")] == 1000
    assert rows[("hotpotqa", "train")] == 908
    # counted as the env counts its splits (the README's 1,838 distractor questions), not all 2,536 dev records
    from sad_eval.envs.hotpotqa import list_tasks

    assert rows[("hotpotqa", "dev")] == len(list_tasks("dev", data_root)) == 1838
    assert rows[("hotpotqa", "other")] == 698
