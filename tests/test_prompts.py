from sad_eval.agents.prompts import ELIDED, build_context, build_messages, render
from sad_eval.segment import segment
from sad_eval.trajectory import Step

STEPS = [Step(f"step {i} thinking about the room", f"go to cabinet {i}",
              f"On the cabinet {i}, you see " + ", ".join(f"a thing {j}" for j in range(30)) + ".") for i in range(6)]


def test_render_locates_each_assistant_turn_in_chat_and_plain(smol_tokenizer):
    msgs = build_messages("alfworld", "Your task is to: put a mug in cabinet.", STEPS[:2])
    for chat in (True, False):
        r = render(msgs, smol_tokenizer, chat=chat)
        assert len(r.turns) == 2
        for (a, b), s in zip(r.turns, STEPS):
            turn = r.text[a:b]
            assert turn == f"Reasoning: {s.reasoning}\nAction: {s.action}\n"
            assert [sp.kind for sp in segment(turn, "alfworld")] == ["REASON", "ACT"]
    assert render(msgs, smol_tokenizer, chat=True).text.endswith("<|im_start|>assistant\n")


def test_overflow_elides_oldest_observations_and_keeps_task_and_turns(smol_tokenizer):
    full = render(build_messages("alfworld", "Your task is to: X.", STEPS), smol_tokenizer).text
    n_full = len(smol_tokenizer(full)["input_ids"])
    msgs, r = build_context("alfworld", "Your task is to: X.", STEPS, smol_tokenizer, max_tokens=n_full - 100)
    assert len(smol_tokenizer(r.text)["input_ids"]) <= n_full - 100
    assert "Your task is to: X." in r.text
    assert all(s.action in r.text for s in STEPS)
    observations = [m["content"] for m in msgs if m["role"] == "user"][1:]
    assert observations[0] == ELIDED and observations[-1] != ELIDED
