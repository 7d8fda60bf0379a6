"""charts/README.md's values table is values.yaml's (generated: tests/deploy/values_table.py)."""

from __future__ import annotations

from tests.deploy import values_table


def test_the_readme_values_table_is_up_to_date() -> None:
    expected = values_table.table(values_table.VALUES.read_text())
    assert values_table.section(values_table.README.read_text()) == expected, (
        "charts/README.md's values table differs from values.yaml: run "
        "`python -m tests.deploy.values_table --write`")


def test_every_value_has_a_row() -> None:
    paths = [path for path, _, _ in values_table.rows(values_table.VALUES.read_text())]
    assert len(paths) == len(set(paths))
    for expected in ("image.repository", "image.tag", "image.pullPolicy",
                     "inferenceService.version", "persistence.storageClass", "redis.deploy",
                     "firstRun.enabled", "training.createAtInstall", "consumer.replicas"):
        assert expected in paths
