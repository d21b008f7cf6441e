"""sad-eval: agent evaluation harness and environment gym for Structured Agent Distillation.

Data flows one way: envs -> agents -> harness (trajectories) -> distill -> reports.
"""

__version__ = "0.1.0"
