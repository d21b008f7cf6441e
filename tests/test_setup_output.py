"""`make setup` prints one line per step (pip's and setuptools' output goes to setup.log), and the
package metadata builds without setuptools' deprecation warnings."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[1]
STEP = ROOT / "scripts" / "quiet-step"


def test_a_step_is_one_line_and_its_output_goes_to_the_log(tmp_path):
    log = tmp_path / "setup.log"
    noisy = "for i in $(seq 300); do echo \"pip line $i\"; echo \"warning $i\" >&2; done"
    r = subprocess.run([str(STEP), str(log), "install things", "bash", "-c", noisy], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == ""
    assert len(r.stdout.splitlines()) == 1 and r.stdout.startswith("install things ... ok (")
    text = log.read_text()
    assert "pip line 300" in text and "warning 300" in text
    r = subprocess.run([str(STEP), str(log), "broken step", "bash", "-c", "echo the real reason; exit 3"],
                       capture_output=True, text=True)
    assert r.returncode == 3 and "FAILED (exit 3)" in r.stdout and "the real reason" in r.stdout


def test_makefile_setup_runs_every_install_through_the_quiet_step():
    make = (ROOT / "Makefile").read_text()
    recipe = make.split("$(STAMP): pyproject.toml", 1)[1].split("\n\n", 1)[0]
    installs = [line for line in recipe.splitlines() if "pip install" in line or "venv .venv" in line]
    assert installs and all("$(STEP)" in line or line.strip().startswith("env PATH") for line in installs)
    assert "setup.log" in make and "setup done:" in recipe


def test_pyproject_license_is_an_spdx_string():
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "MIT"  # the TOML table form is deprecated (setuptools warns)
    assert any(r.startswith("setuptools>=77") for r in meta["build-system"]["requires"])
