"""The real pretrained SmolLM2-135M-Instruct through the harness (slow: `make bench` runs it)."""

import pytest

from sad_eval.agents.hf import DecodingConfig, HFGenerator
from sad_eval.agents.registry import AgentSpec
from sad_eval.run import RunConfig, execute

pytestmark = pytest.mark.slow


def test_smollm2_answers_a_plain_question(smol_tokenizer):
    gen = HFGenerator("smollm2-135m")
    prompt = gen.tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                               tokenize=False, add_generation_prompt=True)
    (out,) = gen.generate([prompt], DecodingConfig(max_new_tokens=16), action_stop=False)
    assert "Paris" in out.text


def test_smollm2_plays_hotpotqa_episodes_to_the_end(tmp_path, data_root):
    spec = AgentSpec(agent="smollm2-135m", env="hotpotqa", decoding=DecodingConfig(max_new_tokens=48))
    eps = execute(RunConfig(spec=spec, split="dev500", out=tmp_path / "smol.jsonl", batch=2, limit=2,
                            env_kwargs={"max_steps": 2}), progress=False)
    assert len(eps) == 2 and all(e.status == "ok" and 1 <= len(e.steps) <= 2 for e in eps)
    assert all(s.tokens for e in eps for s in e.steps)
