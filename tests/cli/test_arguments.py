"""Bad arguments are refused up front, everywhere in the CLI: exit code 2 and one line
that names the option and what it accepts, before any heavy import or work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recstack.cli import app

runner = CliRunner()
CPUS = os.cpu_count() or 1


def run(*args: str, **env: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "80", **env})


CASES = [
    (("train", "--data", "d", "--registry", "r", "--workers", "-1"),
     "--workers must be at least 0, got -1"),
    (("train", "--data", "d", "--registry", "r", "--epochs", "0"),
     "--epochs must be at least 1, got 0"),
    (("train", "--data", "d", "--registry", "r", "--promote", "qa"),
     "--promote: 'qa' is not one of 'dev', 'staging', 'prod'"),
    (("recommend", "--registry", "r", "--users", "u", "--out", "o.csv", "--k", "0"),
     "--k must be at least 1, got 0"),
    (("recommend", "--registry", "r", "--users", "u", "--out", "o.txt"),
     "--out must end in .parquet or .csv, got 'o.txt'"),
    (("recommend", "--registry", "r", "--users", "u", "--out", "o.csv", "--stage", "live"),
     "--stage: 'live' is not one of 'dev', 'staging', 'prod'"),
    (("recommend", "--registry", "r", "--users", "u", "--out", "o.csv", "--stage", "dev",
      "--version", "v1"), "give --version or --stage, not both"),
    (("evaluate", "--registry", "r", "--k", "0,10"), "--k must be integers of at least 1"),
    (("evaluate", "--registry", "r", "--k", "ten"), "--k must be comma-separated integers"),
    (("evaluate", "--registry", "r", "--report", "/nonexistent/dir/r.html"),
     "--report /nonexistent/dir/r.html: no directory /nonexistent/dir"),
    (("data", "generate", "--out", "g", "--users", "0"), "--users must be at least 1, got 0"),
    (("data", "generate", "--out", "g", "--items", "3"), "--items must be at least 10, got 3"),
    (("data", "generate", "--out", "g", "--seed", "-1"), "--seed must be at least 0, got -1"),
    (("data", "generate", "--out", "g", "--start", "yesterday"),
     "--start must be an ISO 8601 time"),
    (("demo", "--days", "0"), "--days must be at least 1, got 0"),
    (("demo", "--sessions", "0"), "--sessions must be at least 1, got 0"),
    (("features", "apply", "--data", "d", "--engine", "fast"),
     "--engine: 'fast' is not one of 'feast', 'direct'"),
    (("models", "promote", "v1", "--registry", "r", "--to", "qa"),
     "--to: 'qa' is not one of 'dev', 'staging', 'prod'"),
    (("models", "promote", "v1", "--registry", "r", "--to", "prod", "--since", "soon"),
     "--since must be an ISO 8601 time"),
    (("evaluate", "--registry", "r", "--since", "2026-01-01"),
     "--since sets the fresh window: it needs --data"),
    (("data", "slice", "--data", "/nonexistent", "--out", "o"), "--data"),
    (("models", "promote", "v1", "--registry", "r", "--to", "dev", "--dry-run"),
     "--dry-run runs the gates: they are for staging and prod"),
    (("models", "rollback", "--registry", "r", "--stage", "qa"),
     "--stage: 'qa' is not one of 'dev', 'staging', 'prod'"),
    (("report", "online", "--data", "d", "--out", "/nonexistent/dir/o.html"),
     "--out /nonexistent/dir/o.html: no directory /nonexistent/dir"),
    (("serve", "--registry", "r", "--port", "0"), "--port must be from 1 to 65535, got 0"),
    (("serve", "--registry", "r", "--stage", "qa"),
     "--stage: 'qa' is not one of 'dev', 'staging', 'prod'"),
    (("serve", "--registry", "r", "--stage", "dev", "--version", "v1"),
     "give --version or --stage, not both"),
    (("collect", "--port", "70000"), "--port must be from 1 to 65535, got 70000"),
    (("consume", "--data", "/nonexistent"), "--data /nonexistent: not a data directory"),
    (("consume", "--data", "d", "--batch", "0"), "--batch must be from 1 to 10000, got 0"),
    # Checked by ConsumerConfig itself, named by the option.
    (("consume", "--data", "d", "--wait", "1", "--group", " "), "--group: must not be empty"),
    (("consume", "--data", "d", "--wait", "1", "--name", ""), "--name: must not be empty"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a[:2]) + " " + a[-2]
                                                          for a, _ in CASES])
def test_bad_arguments_exit_2_with_one_line(args: tuple[str, ...], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""


def test_workers_beyond_the_local_cpus_are_refused(small_world: Path, tmp_path: Path) -> None:
    # A local Ray has one CPU per core; Ray Train would wait forever for more workers.
    result = run("train", "--data", str(small_world), "--registry", str(tmp_path / "r"),
                 "--workers", str(CPUS + 1), RAY_ADDRESS="")
    assert result.exit_code == 2
    assert result.stderr == (f"error: --workers must be from 0 to {CPUS} on this machine "
                             "(one CPU per Ray Train worker; set RAY_ADDRESS to train on a "
                             f"cluster), got {CPUS + 1}\n")
    assert not (tmp_path / "r").exists()
    demo = run("demo", "--out", str(tmp_path / "demo"), "--workers", str(CPUS + 1),
               RAY_ADDRESS="")
    assert demo.exit_code == 2 and demo.stderr.startswith("error: --workers must be from 0")
    assert not (tmp_path / "demo").exists()


CHECK_IMPORTS = """
import sys
from recstack.cli import app
code = app(sys.argv[1:], standalone_mode=False)
heavy = sorted(m for m in ("models.pipeline", "torch", "ray", "feast") if m in sys.modules)
print(code, heavy)
"""


@pytest.mark.parametrize("extra", [["--workers", "-1"], ["--promote", "qa"],
                                   ["--config", "/nonexistent/train.yaml"]])
def test_train_refuses_before_importing_anything_heavy(small_world: Path, tmp_path: Path,
                                                       extra: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK_IMPORTS, "train", "--data", str(small_world),
         "--registry", str(tmp_path / "r"), *extra],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert result.stdout.strip() == "2 []", (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and extra[0] in result.stderr, result.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args", [
    ["serve", "--registry", "r", "--stage", "qa"],
    ["serve", "--registry", "r", "--stage", "dev", "--version", "v1"],
    ["consume", "--data", "/nonexistent"],
    ["consume", "--data", "d", "--wait", "1", "--group", ""],
])
def test_serving_commands_refuse_before_importing_anything_heavy(args: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", CHECK_IMPORTS, *args], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert result.stdout.strip() == "2 []", (result.stdout, result.stderr)


@pytest.mark.parametrize("args", [["features", "get", "--user", "u1"], ["consume", "--wait", "1"]])
def test_a_bad_environment_is_refused_before_importing_anything_heavy(
        small_world: Path, args: list[str]) -> None:
    # The command reads RECSTACK_* once (checks.settings) and hands it down.
    result = subprocess.run([sys.executable, "-c", CHECK_IMPORTS, *args, "--data",
                             str(small_world)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "80",
                                 "RECSTACK_ONLINE_STORE": "bogus"})
    assert result.stdout.strip() == "2 []", (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and "online_store" in result.stderr, result.stderr
