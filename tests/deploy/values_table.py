"""The values table of charts/README.md, generated from charts/recstack/values.yaml: one
row per value with its default and the comment above it (tests/deploy keeps them equal).

    python -m tests.deploy.values_table           # print the table
    python -m tests.deploy.values_table --write   # rewrite the table in charts/README.md
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "charts" / "recstack" / "values.yaml"
README = ROOT / "charts" / "README.md"
START, END = "<!-- values-table:start -->", "<!-- values-table:end -->"
# Kubernetes objects and files passed through whole: one row, their keys undocumented.
PASSTHROUGH = {"resources", "seccompProfile", "capabilities", "serveConfig"}
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][A-Za-z0-9]*):")


def rows(text: str) -> list[tuple[str, str, str]]:
    """(dotted path, default as JSON, comment) of each documented value, in file order."""
    values = yaml.safe_load(text)
    lines = text.splitlines()
    found = []
    parents: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        match = KEY_LINE.match(line)
        if not match:
            continue
        indent, key = len(match["indent"]), match["key"]
        parents = [(i, k) for i, k in parents if i < indent]
        if any(k in PASSTHROUGH for _, k in parents):
            continue
        path = [k for _, k in parents] + [key]
        parents.append((indent, key))
        value: Any = values
        for part in path:
            value = value[part]
        if isinstance(value, dict) and value and key not in PASSTHROUGH:
            continue  # a section: its values have rows of their own
        comment: list[str] = []
        above = number - 1
        while above >= 0 and lines[above].strip().startswith("#"):
            comment.insert(0, lines[above].strip().removeprefix("#").strip())
            above -= 1
        found.append((".".join(path), json.dumps(value, separators=(", ", ": ")),
                      " ".join(comment)))
    return found


def table(text: str) -> str:
    out = ["| value | default | what it does |", "|---|---|---|"]
    for path, default, comment in rows(text):
        cells = [c.replace("|", "\\|") for c in (default, comment)]
        out.append(f"| `{path}` | `{cells[0]}` | {cells[1]} |")
    return "\n".join(out)


def section(readme: str) -> str:
    """The table as it stands in the README, between the markers."""
    return readme.split(START, 1)[1].split(END, 1)[0].strip()


def main(argv: list[str]) -> int:
    generated = table(VALUES.read_text())
    if argv == ["--write"]:
        readme = README.read_text()
        before, rest = readme.split(START, 1)
        after = rest.split(END, 1)[1]
        README.write_text(f"{before}{START}\n{generated}\n{END}{after}")
    else:
        print(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
