"""WebShop's declaration (`EnvSpec`): importing it loads neither the client nor the server."""

from __future__ import annotations

import json
from pathlib import Path

from sad_eval.envs.spec import EnvMetric, EnvSpec

SPEC = EnvSpec(
    name="webshop",
    gym_id="sad_eval/WebShop-v0",
    entry_point="sad_eval.envs.webshop.env:WebShopEnv",
    splits=("train", "test"),
    default_split="test",
    instruction=(
        "You are shopping on a web store for the item described in the instruction. "
        "Actions: search[keywords] on a search page, click[label] on a button or option shown in [ ]. "
        "Pick the options the instruction asks for, then click[Buy Now]."
    ),
    act_line="Action: <search[...] or click[...]>",
    teacher="oracle",
    teacher_factory="sad_eval.agents.experts.webshop:make_expert",
    teacher_env_kwargs={},  # the oracle reads the pages it is shown, no privileged facts
    # WebShop's own score: the purchase reward in [0, 1], reported x100 as WebShop does
    metrics=(EnvMetric("webshop_score", "Score", "score"),),
    legacy_rejection_prefix="Invalid action",  # old trajectory files only (new ones record info["rejected"])
    exemplars="sad_eval.agents.experts.webshop:teacher_exemplars",  # ReAct's prompt is in a notebook only
    data_status="sad_eval.envs.webshop.spec:data_status",
    server_url=True,
    summary="WebShop-1k shopping site (local server)",
)


def data_status(root: Path) -> list:
    from sad_eval.data import DatasetStatus, count_lines

    docs = root / "webshop" / "items_1k_documents.jsonl"
    rows = [DatasetStatus("webshop", "catalogue", "products", count_lines(docs) if docs.is_file() else 0,
                          docs.is_file())]
    ins = root / "webshop" / "items_ins_v2_1000.json"
    n_ins = 0
    if ins.is_file():
        n_ins = sum(1 for v in json.loads(ins.read_text()).values() if v.get("instruction"))
    rows.append(DatasetStatus("webshop", "goals", "instructed products", n_ins, ins.is_file()))
    return rows
