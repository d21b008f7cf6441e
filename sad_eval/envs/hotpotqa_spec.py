"""HotPotQA-ReAct's declaration (`EnvSpec`), apart from `envs/hotpotqa.py` (which loads the wiki store)."""

from __future__ import annotations

import json
from pathlib import Path

from sad_eval.envs.spec import ACT, REACT_RULE, REASON, EnvMetric, EnvSpec

SPEC = EnvSpec(
    name="hotpotqa",
    gym_id="sad_eval/HotPotQA-v0",
    entry_point="sad_eval.envs.hotpotqa:HotPotQAEnv",
    splits=("train", "dev", "dev500", "react130"),
    default_split="dev500",
    instruction=(
        "Answer the question by searching a Wikipedia store. Actions: search[entity] returns the first "
        "sentences of that page or similar titles; lookup[keyword] returns the next sentence with the "
        "keyword on the current page. When you know the answer, give it on an Answer line."
    ),
    act_line="Action: <search[...] or lookup[...]>   (or, at the end, Answer: <short answer>)",
    # the final answer is an action too (paper Appendix E.1)
    segmentation={**REACT_RULE, "Answer": ACT},
    extra_rules={
        # The paper's two-phase rule for HotPotQA: everything generated before the final answer is
        # reasoning (tool calls included); only the `Answer:` line is the action.
        "hotpotqa-two-phase": {"Reasoning": REASON, "Thought": REASON, "Action": REASON, "Answer": ACT,
                               "Observation": None},
    },
    # `finish[x]` is written as the line `Answer: x`, and parsing maps it back
    answer_action=(r"^finish\[(.*)\]$", "Answer", "finish[{}]"),
    stop_markers=("Action", "Answer"),
    teacher="oracle",
    teacher_factory="sad_eval.agents.experts.hotpotqa:make_expert",
    teacher_env_kwargs={"privileged": True},  # gold answer and supporting facts
    metrics=(EnvMetric("hotpotqa_em", "EM", "meta:em"), EnvMetric("hotpotqa_f1", "F1", "meta:f1")),
    legacy_rejection_prefix="Invalid action",  # old trajectory files only (new ones record info["rejected"])
    exemplars="sad_eval.agents.experts.hotpotqa:teacher_exemplars",
    react_prompts="react/prompts_naive.json",
    react_exemplars="sad_eval.agents.experts.hotpotqa:react_prompt_exemplars",
    data_status="sad_eval.envs.hotpotqa_spec:data_status",
    summary="HotPotQA questions over an offline Wikipedia store (ReAct's search/lookup/finish)",
)


def data_status(root: Path) -> list:
    from sad_eval.data import DatasetStatus

    hp = root / "hotpotqa" / "hotpotqa_with_context.jsonl"
    counts: dict[str, int] = {}
    titles: set[str] = set()
    if hp.is_file():
        with open(hp) as f:
            for line in f:
                rec = json.loads(line)
                titles.update(t for t, _ in rec["context"])
                # counted as the env's splits are (envs/hotpotqa.py): distractor-setting questions with
                # their gold paragraphs; the fullwiki records only add paragraphs to the shared store
                ctx = {t for t, _ in rec["context"]}
                if rec.get("setting", "distractor") == "distractor" and all(t in ctx for t, _ in rec["supporting_facts"]):
                    counts[rec["split"]] = counts.get(rec["split"], 0) + 1
                else:
                    counts["other"] = counts.get("other", 0) + 1
    rows = [DatasetStatus("hotpotqa", split, unit, counts.get(split, 0), split in counts)
            for split, unit in (("train", "questions"), ("dev", "distractor questions"))]
    if counts.get("other"):
        rows.append(DatasetStatus("hotpotqa", "other", "fullwiki records", counts["other"], True))
    rows.append(DatasetStatus("hotpotqa", "wikipedia", "paragraph titles", len(titles), hp.is_file()))
    return rows
