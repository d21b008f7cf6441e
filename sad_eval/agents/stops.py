"""Where a generated ReAct turn ends: the stop rules every model agent applies (the HF policy, the
OpenAI-compatible client, the model server), so that a turn is cut the same way whoever generates it."""

from __future__ import annotations

import re
from typing import Sequence

# The generated turn ends at the newline that closes an action line.
ACTION_LINE_END = re.compile(r"(?:^|\s)(?:Action|Answer):[^\n]*\S[^\n]*\n")
# an endpoint asked to stop before the env's next message (completions API)
OBS_STOP = "\nObservation:"


def stop_index(text: str, stop: Sequence[str], action_stop: bool) -> int | None:
    """Where to cut generated text: after the action line, or before a stop string."""
    cut = None
    if action_stop:
        m = ACTION_LINE_END.search(text)
        if m:
            cut = m.end()
    for s in stop:
        i = text.find(s)
        if i >= 0 and (cut is None or i < cut):
            cut = i
    return cut
