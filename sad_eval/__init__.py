"""sad-eval: agent evaluation harness and environment gym for Structured Agent Distillation.

Data flows one way: envs -> agents -> harness (trajectories) -> distill -> reports.
The Python API (`evaluate`, `collect`, `distill`, `EvalResult`) lives in `sad_eval.api`; it is
imported on first use so that `import sad_eval` stays light.
"""

__version__ = "0.1.0"

# Registers the envs' gym ids (`gymnasium.make("sad_eval/HotPotQA-v0")` after `import sad_eval`):
# their specs are strings, so no env module (TextWorld, the WebShop server) is imported here.
from sad_eval import envs as _envs  # noqa: E402,F401

__all__ = ["evaluate", "collect", "distill", "EvalResult", "DistillResult", "__version__"]


def __getattr__(name: str):
    if name == "distill":  # the subpackage, which is callable: `sad_eval.distill(...)` is `api.distill`
        import importlib

        return importlib.import_module("sad_eval.distill")
    if name in ("evaluate", "collect", "EvalResult", "DistillResult"):
        from sad_eval import api

        return getattr(api, name)
    raise AttributeError(f"module 'sad_eval' has no attribute {name!r}")
