"""`recstack ... --help` and usage errors as a newcomer reads them, in an 80-column
terminal."""

from __future__ import annotations

import itertools
import re

import pytest
import typer
from typer.testing import CliRunner

from recstack.cli import app

WIDTH = 80
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": str(WIDTH)})


def _paths(group, prefix: tuple[str, ...] = ()):
    yield prefix, group
    if hasattr(group, "commands"):  # typer vendors its own click: duck-type the groups
        for name, command in group.commands.items():
            yield from _paths(command, (*prefix, name))


PATHS = [path for path, _ in _paths(typer.main.get_command(app))]


def _listing(output: str) -> list[str]:
    """The rows of the Commands panel, borders stripped."""
    panel = output.split("Commands")[1].splitlines()[1:]
    return [line.strip("│ ") for line in panel if line.startswith("│")]


def test_each_summary_is_one_whole_line_at_80_columns() -> None:
    groups = [(path, group) for path, group in _paths(typer.main.get_command(app))
              if hasattr(group, "commands")]
    assert len(groups) >= 5
    for path, group in groups:
        rows = _listing(run(*path, "--help").output)
        assert len(rows) == len(group.commands), (path, rows)  # no row wrapped
        for row, (name, command) in zip(rows, group.commands.items(), strict=True):
            summary = (command.short_help or command.help).split("\n\n")[0]
            assert " ".join(row.split()) == f"{name} {summary}", (path, row)


def _prose(output: str) -> list[str]:
    """The help text between the usage line and the first panel."""
    lines = output.splitlines()
    start = next(n for n, line in enumerate(lines) if "Usage:" in line) + 1
    end = next(n for n, line in enumerate(lines) if line.startswith("╭"))
    return [line.rstrip() for line in lines[start:end]]


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(p) or "recstack" for p in PATHS])
def test_help_wraps_to_the_terminal_and_labels_values_only(path: tuple[str, ...]) -> None:
    result = run(*path, "--help")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    # Typer's Python type hints are gone; a flag takes no value and shows none.
    assert not re.search(r"<(bool|str|int|float|path|list\[str\])>", result.output)
    assert re.search(r"--help\s+Show this", result.output)
    # A line of prose ends where the next word would not have fit, never earlier: the
    # docstrings' own line breaks are not kept.
    prose = _prose(result.output)
    for line, following in itertools.pairwise(prose):
        if line.strip() and following.strip():
            next_word = following.split()[0]
            assert len(line) + 1 + len(next_word) > WIDTH - 1, (path, line, following)


def test_a_usage_error_is_one_line() -> None:
    out_of_range = run("demo", "--sessions", "0")
    assert out_of_range.exit_code == 2
    assert out_of_range.stderr == "error: --sessions must be at least 1, got 0\n"
    unknown = run("models", "list", "--registy", "x")
    assert unknown.exit_code == 2
    assert unknown.stderr.count("\n") == 1 and "--registy" in unknown.stderr
    assert "recstack models list --help" in unknown.stderr
    not_a_number = run("data", "generate", "--out", "x", "--users", "many")
    assert not_a_number.exit_code == 2 and not_a_number.stderr.count("\n") == 1
    assert "--users: Input should be a valid integer" in not_a_number.stderr
    # A bare group still answers with its help, not an error line.
    bare = run("models")
    assert "Usage:" in bare.output and "error:" not in bare.output
