"""The second stage: candidates from every generator, features as of each example's time
(Feast point-in-time joins plus crosses), and an XGBoost learning-to-rank model."""
