"""serve.yaml: defaults, deployment options, variants, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.config import ConfigError, ServeConfig, load_config


def test_defaults_serve_one_variant_with_the_default_rules() -> None:
    config = load_config(None)
    assert [v.name for v in config.variants] == ["default"]
    assert config.rule_config().diversity == "mmr" and config.cache.enabled
    assert config.graph.ranker.options() == {"num_replicas": 1,
                                             "ray_actor_options": {"num_cpus": 0.0}}


def test_a_full_file_sets_replicas_resources_rules_and_variants(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("""
graph:
  ranker: {replicas: 2, num_cpus: 0.5, memory_mb: 512}
  retriever: {threads: 2}
rules: {exploration_rate: 0.0}
cache: {ttl_s: 30}
experiment: feed
variants:
  - {name: control, weight: 3}
  - {name: diverse, weight: 1, rules: {diversity_weight: 0.6}}
  - {name: next, weight: 1, stage: staging}
""")
    config = load_config(path)
    assert config.graph.ranker.options() == {
        "num_replicas": 2, "ray_actor_options": {"num_cpus": 0.5, "memory": 512 * 2**20}}
    assert (config.graph.retriever.threads, config.graph.ranker.threads) == (2, None)
    control, diverse, following = config.variants
    assert config.rule_config(control).exploration_rate == 0.0
    assert config.rule_config(diverse).diversity_weight == 0.6
    assert config.rule_config(diverse).exploration_rate == 0.0  # the top level still holds
    assert following.stage == "staging" and config.cache.ttl_s == 30


@pytest.mark.parametrize(("text", "message"), [
    ("variants: [{name: a, weight: 0}]", "variants[0].weight: Input should be greater than 0"),
    ("variants: [{name: a, weight: 1}, {name: a, weight: 1}]", "unique"),
    ("variants: [{name: a, weight: 1, version: v1, stage: prod}]",
     "variants[0]: give version or stage, not both"),
    ("rules: {diversity: fancy}",
     "rules.diversity: Input should be 'mmr', 'category_cap' or 'none'"),
    ("variants: [{name: a, weight: 1, rules: {speed: 3}}]",
     "variant a: rules.speed: Extra inputs are not permitted"),
    ("graph: {ranker: {replicas: 0}}", "graph.ranker.replicas"),
    ("cache: {ttl: 3}", "cache.ttl: Extra inputs are not permitted"),
    ("- just a list", "expected a mapping"),
    ("graph: [", "serve.yaml"),
])
def test_mistakes_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(str(path)) and message in str(error.value)


def test_variants_cannot_be_empty() -> None:
    with pytest.raises(ValueError, match="variants"):
        ServeConfig.model_validate({"variants": []})


def test_the_example_file_loads() -> None:
    example = Path(__file__).parents[2] / "serving" / "serve.example.yaml"
    assert [v.name for v in load_config(example).variants] == ["control", "diverse"]


def test_threads_set_each_replicas_blas_and_torch_thread_counts() -> None:
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from serving.graph import use_threads

    before = torch.get_num_threads()
    with threadpool_limits():  # restores the BLAS/OpenMP counts on leaving
        use_threads(1)
        assert torch.get_num_threads() == 1
        assert {pool["num_threads"] for pool in threadpool_info()} == {1}
    torch.set_num_threads(before)
