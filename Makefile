# The two commands a user types on a fresh machine: `make demo` and `make test`.
PY      := .venv/bin/python
SADEVAL := .venv/bin/sad-eval
STAMP   := .venv/.setup-done

.PHONY: setup demo quick test bench clean-venv

setup: $(STAMP)
	@$(SADEVAL) data install
	@$(SADEVAL) models pull smollm2-135m

# torch==2.13.0 goes in first: a bare `torch` requirement would pull a multi-GB CUDA build.
# The ALFWorld engine: textworld 1.7.0 (its [pddl] extra compiles fast-downward, ~4 min cold),
# alfworld 0.3.5 without its deps (they would pull ai2thor/opencv). Its text env needs nothing
# beyond textworld's own deps (tqdm, termcolor, numpy); the last step checks the engine imports.
# fast-downward's build script calls a bare `python`: the venv's bin goes first on PATH so that is
# the venv's interpreter (pyenv's shim, inside pip's build env, loses the standard library).
# Each step prints one line; pip's and the compilers' output goes to $(SETUP_LOG) (shown on failure).
SETUP_LOG := setup.log
STEP      := scripts/quiet-step $(SETUP_LOG)
$(STAMP): pyproject.toml
	@: > $(SETUP_LOG)
	@$(STEP) "create .venv" python3 -m venv .venv
	@$(STEP) "upgrade pip" $(PY) -m pip install --upgrade pip
	@$(STEP) "install torch 2.13.0 (CPU)" $(PY) -m pip install torch==2.13.0
	@$(STEP) "install sad-eval and its dev extras" $(PY) -m pip install -e '.[dev]'
	@$(STEP) "install the ALFWorld engine (textworld[pddl], builds fast-downward)" \
		env PATH="$(CURDIR)/.venv/bin:$$PATH" $(PY) -m pip install 'textworld[pddl]==1.7.0'
	@$(STEP) "install alfworld 0.3.5 (no deps)" $(PY) -m pip install --no-deps alfworld==0.3.5
	@$(STEP) "check the ALFWorld engine imports" $(PY) -c 'from sad_eval.envs.alfworld import engine; engine()'
	@$(PY) -c 'import sys, torch, transformers, sad_eval; print(f"setup done: python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, sad-eval {sad_eval.__version__}; full log: $(SETUP_LOG)")'
	@touch $(STAMP)

# the main job: distil SmolLM2-135M into a WebShop agent, evaluated on held-out goals next to its teacher
demo: setup
	$(SADEVAL) data status
	$(SADEVAL) experiment configs/demo.yaml --out runs/demo

# the whole pipeline on all three envs with a tiny student (minutes; it learns the format only)
quick: setup
	$(SADEVAL) experiment configs/quick.yaml --out runs/quick

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pytest -q -m slow
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-venv:
	rm -rf .venv
