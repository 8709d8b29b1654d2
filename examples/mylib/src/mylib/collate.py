"""Collate functions."""

from __future__ import annotations

import torch


def pad_collate(samples: list[tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
    """``(tokens, label)`` samples into a batch: the tokens padded with 0 to the longest, their lengths,
    and the labels."""
    lengths = torch.tensor([len(tokens) for tokens, _ in samples])
    tokens = torch.zeros(len(samples), int(lengths.max()), dtype=torch.int64)
    for row, (sample, _) in enumerate(samples):
        tokens[row, : len(sample)] = sample
    return {"tokens": tokens, "lengths": lengths, "labels": torch.tensor([label for _, label in samples])}
