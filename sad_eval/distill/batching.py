"""Token sequences -> padded tensors (the trainer's batches and the top-k cache's teacher passes)."""

from __future__ import annotations

import torch


def pad_batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, T] and a 0/1 real-token mask. With right padding and causal attention
    no real token attends to a pad, so the model needs no attention mask."""
    t = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    real = torch.zeros((len(seqs), t), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        real[i, :len(s)] = True
    return ids, real
