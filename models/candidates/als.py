"""Implicit-feedback matrix factorisation (ALS, Hu, Koren and Volinsky 2008) via `implicit`."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from models.candidates.base import CandidateGenerator, TrainingData


class ALS(CandidateGenerator):
    name = "als"

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 10.0,
                 iterations: int = 15, seed: int = 0) -> None:
        self.params = {"factors": factors, "regularization": regularization, "alpha": alpha,
                       "iterations": iterations, "random_state": seed}

    def fit(self, data: TrainingData) -> ALS:
        from implicit.cpu.als import AlternatingLeastSquares

        # implicit parallelises itself; a multi-threaded BLAS underneath only contends
        # (implicit checks this when the model is built, so build it inside the limit).
        with threadpool_limits(1):
            model = AlternatingLeastSquares(**self.params, calculate_training_loss=False)
            model.fit(data.matrix.tocsr(), show_progress=False)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T
