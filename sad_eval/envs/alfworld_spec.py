"""ALFWorld's declaration (`EnvSpec`), kept apart from `envs/alfworld.py` so that reading it imports
no engine: `sad_eval.envs` registers it on import, and TextWorld loads only when a game is made."""

from __future__ import annotations

from pathlib import Path

from sad_eval.envs.spec import EnvSpec

# split name -> folder of alfworld/json_2.1.1 (the train split is the installed subset `valid_train`)
SPLIT_FOLDERS = {"train": "valid_train", "valid_seen": "valid_seen", "valid_unseen": "valid_unseen"}

SPEC = EnvSpec(
    name="alfworld",
    gym_id="sad_eval/ALFWorld-v0",
    entry_point="sad_eval.envs.alfworld:ALFWorldEnv",
    splits=tuple(SPLIT_FOLDERS),
    default_split="valid_unseen",
    instruction=(
        "You are an agent in a household. Interact with the room to finish the task. "
        "Useful actions: go to X, open X, close X, take X from Y, put X in/on Y, clean X with Y, "
        "heat X with Y, cool X with Y, use X, examine X, look, inventory."
    ),
    act_line="Action: <one command>",
    teacher="expert",
    teacher_factory="sad_eval.agents.experts.alfworld:make_expert",
    # the env must compute the handcoded expert's next command
    teacher_env_kwargs={"privileged": True},
    legacy_rejection_prefix="Nothing happens.",  # old trajectory files only (new ones record info["rejected"])
    exemplars="sad_eval.agents.experts.alfworld:teacher_exemplars",
    react_prompts="react/alfworld_3prompts.json",
    react_exemplars="sad_eval.agents.experts.alfworld:react_prompt_exemplars",
    task_type="sad_eval.envs.alfworld:task_type_of",
    data_status="sad_eval.envs.alfworld_spec:data_status",
    summary="ALFWorld household text games (TextWorld/PDDL)",
)


def data_status(root: Path) -> list:
    from sad_eval.data import DatasetStatus

    rows = []
    for split, folder in SPLIT_FOLDERS.items():
        d = root / "alfworld" / "json_2.1.1" / folder
        n = len(list(d.glob("*/*/game.tw-pddl"))) if d.is_dir() else 0
        rows.append(DatasetStatus("alfworld", split, "games", n, n > 0))
    return rows
