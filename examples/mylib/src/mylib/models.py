"""Models."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn


class BagOfTokens(nn.Module):
    """Classifies a padded batch of token sequences by the mean of their embeddings."""

    def __init__(
        self, vocabulary: int = 100, width: int = 16, classes: int = 2, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, width, padding_idx=0)
        self.hidden = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(tokens.shape[1], device=tokens.device) < lengths[:, None]).unsqueeze(-1)
        embedded = self.embedding(tokens) * mask
        mean = embedded.sum(1) / lengths[:, None].to(embedded.dtype)
        hidden: torch.Tensor = self.dropout(self.hidden(mean).relu())
        logits: torch.Tensor = self.head(hidden)
        return logits

    if TYPE_CHECKING:  # model(tokens, lengths) is checked, and typed Tensor

        def __call__(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor: ...
