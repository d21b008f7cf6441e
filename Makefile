# The two commands a user types on a fresh machine: `make demo` and `make test`.
PY      := .venv/bin/python
SADEVAL := .venv/bin/sad-eval
STAMP   := .venv/.setup-done

.PHONY: setup demo test bench clean-venv

setup: $(STAMP)
	@$(SADEVAL) data install
	@$(SADEVAL) models pull smollm2-135m

# torch==2.13.0 goes in first: a bare `torch` requirement would pull a multi-GB CUDA build.
# The ALFWorld engine: textworld 1.7.0 (its [pddl] extra compiles fast-downward, ~4 min cold),
# alfworld 0.3.5 without its deps (they would pull ai2thor/opencv). Its text env needs nothing
# beyond textworld's own deps (tqdm, termcolor, numpy); the last line checks the engine imports.
# fast-downward's build script calls a bare `python`: the venv's bin goes first on PATH so that is
# the venv's interpreter (pyenv's shim, inside pip's build env, loses the standard library).
$(STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(PY) -m pip install -q 'textworld[pddl]==1.7.0'
	$(PY) -m pip install -q --no-deps alfworld==0.3.5
	$(PY) -c 'from sad_eval.envs.alfworld import engine; engine()'
	touch $(STAMP)

demo: setup
	$(SADEVAL) data status
	$(SADEVAL) experiment configs/quick.yaml --out runs/quick

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pytest -q -m slow
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-venv:
	rm -rf .venv
