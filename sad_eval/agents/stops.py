"""Where a generated ReAct turn ends: the stop rules every model agent applies (the HF policy, the
OpenAI-compatible client, the model server), so that a turn is cut the same way whoever generates it."""

from __future__ import annotations

import re
from typing import Sequence

from sad_eval.envs.spec import cached_by_registry, env_specs


@cached_by_registry
def action_line_end() -> re.Pattern[str]:
    """The generated turn ends at the newline that closes an action line: a line of one of the
    registered envs' stop markers (`EnvSpec.stop_markers`: ``Action``, HotPotQA's ``Answer``)."""
    markers = sorted({m for spec in env_specs() for m in spec.stop_markers})
    return re.compile(r"(?:^|\s)(?:" + "|".join(map(re.escape, markers)) + r"):[^\n]*\S[^\n]*\n")


ACTION_LINE_END = action_line_end()  # the built-in envs' (`Action|Answer`)
# an endpoint asked to stop before the env's next message (completions API)
OBS_STOP = "\nObservation:"


def stop_index(text: str, stop: Sequence[str], action_stop: bool) -> int | None:
    """Where to cut generated text: after the action line, or before a stop string."""
    cut = None
    if action_stop:
        m = action_line_end().search(text)
        if m:
            cut = m.end()
    for s in stop:
        i = text.find(s)
        if i >= 0 and (cut is None or i < cut):
            cut = i
    return cut
