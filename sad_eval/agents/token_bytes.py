"""The raw bytes of each vocabulary token, for OpenAI-style log-probs.

OpenAI's log-prob entries name a token by its text and its UTF-8 ``bytes``; a byte-level BPE token
can be part of a multi-byte character, so only the bytes identify it. `sad-eval serve model` writes
them from its tokenizer; the client maps them back to the student tokenizer's ids
(`token_ids_for`), which is how a top-k sidecar collected from an endpoint gets ids at all.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-to-unicode table, inverted (the byte-level BPE alphabet SmolLM2 uses)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


_CACHE: dict[int, tuple[list[bytes], dict[bytes, int]]] = {}


def vocab_bytes(tokenizer) -> tuple[list[bytes], dict[bytes, int]]:
    """(bytes of id i, {bytes: lowest id}) for a tokenizer (cached per tokenizer object)."""
    key = id(tokenizer)
    if key not in _CACHE:
        dec = _byte_decoder()
        special = set(getattr(tokenizer, "all_special_tokens", []) or [])
        n = len(tokenizer)
        pieces = tokenizer.convert_ids_to_tokens(list(range(n)))
        out: list[bytes] = []
        for i, piece in enumerate(pieces):
            piece = piece or ""
            if piece not in special and piece and all(c in dec for c in piece):
                out.append(bytes(dec[c] for c in piece))  # byte-level BPE piece
            else:
                out.append((piece if piece in special else tokenizer.decode([i])).encode())
        index: dict[bytes, int] = {}
        for i, b in enumerate(out):
            index.setdefault(b, i)
        _CACHE[key] = (out, index)
    return _CACHE[key]


def token_entry(tokenizer, token_id: int, logprob: float) -> dict:
    """One OpenAI chat log-prob entry (``token``, ``logprob``, ``bytes``)."""
    b = vocab_bytes(tokenizer)[0][token_id]
    return {"token": b.decode("utf-8", errors="replace"), "logprob": float(logprob), "bytes": list(b)}
