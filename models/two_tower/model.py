"""The two towers and the in-batch sampled-softmax loss with log-Q correction."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _mlp(inputs: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, out))


class TwoTower(nn.Module):
    """User tower: id embedding + mean of the item embeddings of recent history.
    Item tower: id embedding + content features (categories, price, year, text)."""

    def __init__(self, n_users: int, n_items: int, item_feature_dim: int, dim: int = 64,
                 hidden: int = 128, temperature: float = 0.05, sparse_ids: bool = False
                 ) -> None:
        super().__init__()
        # sparse_ids: a batch's gradient holds only the id rows it read
        # (TwoTowerConfig.sparse_ids)
        self.user_id = nn.Embedding(n_users + 1, dim, padding_idx=0, sparse=sparse_ids)
        self.item_id = nn.Embedding(n_items + 1, dim, padding_idx=0, sparse=sparse_ids)
        self.item_features = nn.Embedding(n_items + 1, item_feature_dim, padding_idx=0)
        self.item_features.weight.requires_grad_(False)  # fixed content, looked up by index
        self.user_mlp = _mlp(2 * dim, hidden, dim)
        self.item_mlp = _mlp(dim + item_feature_dim, hidden, dim)
        self.temperature = temperature
        nn.init.normal_(self.user_id.weight, std=0.05)
        nn.init.normal_(self.item_id.weight, std=0.05)

    def load_item_features(self, features: torch.Tensor) -> None:
        with torch.no_grad():
            self.item_features.weight.copy_(features)

    def user_vectors(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        mask = (history > 0).float().unsqueeze(-1)
        pooled = (self.item_id(history) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return F.normalize(self.user_mlp(torch.cat([self.user_id(users), pooled], -1)), dim=-1)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.item_id(items), self.item_features(items)], -1)
        return F.normalize(self.item_mlp(x), dim=-1)

    def forward(self, users: torch.Tensor, history: torch.Tensor, items: torch.Tensor,
                log_q: torch.Tensor) -> torch.Tensor:
        """Sampled-softmax loss over the batch: every other positive is a negative.
        In-batch negatives are drawn in proportion to popularity, so log q(item) is
        subtracted from each logit (log-Q correction) to keep scores unbiased."""
        u = self.user_vectors(users, history)
        v = self.item_vectors(items)
        logits = u @ v.T / self.temperature - log_q[items].unsqueeze(0)
        same = items.unsqueeze(0) == items.unsqueeze(1)
        eye = torch.eye(len(items), dtype=torch.bool, device=items.device)
        logits = logits.masked_fill(same & ~eye, float("-inf"))  # a repeat is no negative
        labels = torch.arange(len(items), device=items.device)
        return F.cross_entropy(logits, labels)
