"""Clients of the stores every process shares: the Feast feature store (Redis
online, parquet offline; `feature_store`, `point_in_time`), plain Redis
(`redis_address`) and the model registry (`registry`).

Above `contracts` and `feature_repo`, below `models`: training, serving and the
CLI all reach the stores through these modules.
"""
