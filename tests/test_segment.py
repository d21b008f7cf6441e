import pytest

from sad_eval.errors import SadEvalError
from sad_eval.segment import (ACT, REASON, assign_tokens, format_turn, linearize, parse_turn,
                              require_reason_and_act, segment, token_masks, validate_masks)
from sad_eval.trajectory import Step

PAPER_D3 = "Reasoning: I should find the fridge. It's likely in the kitchen. Action: goto kitchen"


def bodies(text, spans):
    return [(s.kind, s.body(text)) for s in spans]


def test_paper_appendix_d3_one_line_example():
    spans = segment(PAPER_D3, "alfworld")
    assert bodies(PAPER_D3, spans) == [
        (REASON, "I should find the fridge. It's likely in the kitchen."),
        (ACT, "goto kitchen"),
    ]
    # spans tile the text from the first marker: the marker belongs to its span
    assert spans[0].start == 0 and spans[0].end == spans[1].start and spans[1].end == len(PAPER_D3)


def test_two_line_turns_with_observations_are_context():
    text = ("Reasoning: To heat an egg I need to find one first.\nAction: go to fridge 1\n"
            "Observation: The fridge 1 is closed.\n"
            "Reasoning: It is closed, so I open it.\nAction: open fridge 1\n")
    spans = segment(text, "alfworld")
    assert [s.kind for s in spans] == [REASON, ACT, REASON, ACT]
    assert all("Observation" not in text[s.start:s.end] for s in spans)
    assert bodies(text, spans)[1] == (ACT, "go to fridge 1")


def test_hotpotqa_answer_is_act_and_two_phase_rule():
    text = ("Reasoning: I need Ed Wood's nationality.\nAction: search[Ed Wood]\n"
            "Observation: Ed Wood was an American filmmaker.\n"
            "Reasoning: He is American, so the answer is yes.\nAnswer: yes\n")
    default = segment(text, "hotpotqa")
    assert [s.kind for s in default] == [REASON, ACT, REASON, ACT]
    assert default[-1].marker == "Answer" and default[-1].body(text) == "yes"
    two = segment(text, "hotpotqa", rule="hotpotqa-two-phase")
    assert [s.kind for s in two] == [REASON, REASON, REASON, ACT]


def test_paper_e1_style_webshop_turn_and_parse_roundtrip():
    turn = format_turn("webshop", "The instruction asks for a 3 ounce bottle under $50; I search for it.",
                       "search[3 ounce bright citrus deodorant]")
    assert turn.startswith("Reasoning: ") and "\nAction: search[" in turn
    p = parse_turn("webshop", turn)
    assert p.valid and p.action == "search[3 ounce bright citrus deodorant]"
    assert p.reasoning.startswith("The instruction asks")


def test_hotpotqa_finish_is_written_as_answer_and_parsed_back():
    turn = format_turn("hotpotqa", "Both are American.", "finish[yes]")
    assert turn.endswith("Answer: yes\n")
    assert parse_turn("hotpotqa", turn).action == "finish[yes]"


def test_unparsable_output_is_invalid_and_raw_text_becomes_action():
    p = parse_turn("alfworld", "I am not sure what to do here")
    assert not p.valid and p.action == "I am not sure what to do here"
    # only the first line after Action: is the action (models ramble on)
    p = parse_turn("alfworld", "Reasoning: go.\nAction: look\nObservation: made up")
    assert p.valid and p.action == "look"


def test_unknown_rule_and_missing_spans_raise_clear_errors():
    with pytest.raises(SadEvalError, match="unknown segmentation rule"):
        segment("x", "nosuchenv")
    with pytest.raises(SadEvalError, match="no ACT"):
        require_reason_and_act(segment("Reasoning: only thinking", "alfworld"))


def test_assign_tokens_majority_overlap_and_disjoint():
    text = "Reasoning: a b. Action: go"
    spans = segment(text, "alfworld")
    # token " Action" starts with the reasoning's trailing space: it belongs to ACT
    offsets = [(0, 10), (10, 12), (12, 14), (14, 15), (15, 22), (22, 23), (23, 26), (0, 0)]
    r, a = assign_tokens(offsets, spans)
    assert r == [1, 1, 1, 1, 0, 0, 0, 0]
    assert a == [0, 0, 0, 0, 1, 1, 1, 0]


def test_masks_on_real_tokenizer_are_disjoint_and_aligned(smol_tokenizer):
    steps = [Step("I should find the fridge. It's likely in the kitchen.", "go to kitchen", "You arrive at the kitchen."),
             Step("The fridge is here; I open it.", "open fridge 1", "You open the fridge 1.")]
    text = linearize(steps, "alfworld")
    spans = segment(text, "alfworld")
    masks = token_masks(text, spans, smol_tokenizer)
    rep = validate_masks(masks, spans, text)
    assert rep["overlap"] == 0
    assert rep["reason_coverage"] == 1.0 and rep["act_coverage"] == 1.0
    assert all(r + a <= 1 for r, a in zip(masks.m_reason, masks.m_act))
    # decoding each mask gives back exactly its spans' text (boundaries align with spans)
    dec = lambda m: smol_tokenizer.decode([t for t, k in zip(masks.input_ids, m) if k])
    reason_text = dec(masks.m_reason)
    assert "I should find the fridge" in reason_text and "go to kitchen" not in reason_text
    assert "You arrive" not in reason_text and "You arrive" not in dec(masks.m_act)
    assert "go to kitchen" in dec(masks.m_act) and "open fridge 1" in dec(masks.m_act)


def test_slow_tokenizer_without_offsets_is_rejected():
    class Slow:
        is_fast = False

    with pytest.raises(SadEvalError, match="offset"):
        token_masks("Reasoning: x\nAction: y", segment("Reasoning: x\nAction: y", "alfworld"), Slow())
