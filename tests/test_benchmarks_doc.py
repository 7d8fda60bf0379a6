"""BENCHMARKS.md keeps, for each benchmark (each `## ` section), the command that
produced its figure, the machine, the commit and the date; its images exist; and
every citation of a BENCHMARKS.md section in the code names a heading that exists.

A section's facts are list items `- Machine: ...`, `- Commit: ...`, `- Date: ...`,
and its command is either `- Command: `the command`` or a paragraph that starts with
`Command` and ends with `:`, followed by a fenced block. A citation is
`BENCHMARKS.md, serving load test` in Python, or `BENCHMARKS.md "Image"` /
`BENCHMARKS.md, "canary decisions"` (quoted) in Python and the READMEs; a bare
`(BENCHMARKS.md)` cites no section."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "BENCHMARKS.md"
CODE_DIRS = ("models", "serving", "recstack", "benchmarks", "tests")

INLINE_COMMAND = re.compile(r"^- Command:\s*`([^`]*)`")
FACT = re.compile(r"^- (Machine|Commit|Date):(.*)$")
HEX = re.compile(r"\b[0-9a-f]{7,40}\b")
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
QUOTED = re.compile(r'BENCHMARKS\.md(?:,\s*|\s+\(?)"([^"]+)"')
PLAIN = re.compile(r'BENCHMARKS\.md,\s+([^",.;)]+)')


def sections(text: str) -> dict[str, list[str]]:
    """`## ` heading -> its lines, subsections included."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return found


def commands(lines: list[str]) -> list[str]:
    """Each command the section states: inline, or the fenced block after `Command ...:`."""
    found = []
    for n, line in enumerate(lines):
        if line.startswith("- Command"):
            match = INLINE_COMMAND.match(line)
            found.append(match.group(1).strip() if match else "")
        elif line.startswith("Command") and (n == 0 or not lines[n - 1].strip()):
            end = n
            while end < len(lines) and lines[end].strip() and not lines[end].endswith(":"):
                end += 1
            rest = [x for x in lines[end + 1 :] if x.strip()]
            block = []
            if end < len(lines) and lines[end].endswith(":") and rest and rest[0].startswith("```"):
                for x in rest[1:]:
                    if x.startswith("```"):
                        break
                    block.append(x)
            found.append("\n".join(block).strip())
    return found


def facts(lines: list[str], name: str) -> list[str]:
    return [m.group(2).strip() for m in map(FACT.match, lines) if m and m.group(1) == name]


def headings(text: str) -> list[str]:
    """Every heading's text, outside fenced blocks."""
    return re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S), re.M)


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def in_git() -> bool:
    """A full checkout: a shallow clone (CI's) may lack the commits named."""
    try:
        out = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return False
    return out == "false"


SECTIONS = sections(DOC.read_text())


def test_there_are_sections() -> None:
    assert len(SECTIONS) >= 10, SECTIONS.keys()


@pytest.mark.parametrize("heading", SECTIONS)
def test_each_section_states_command_machine_commit_and_date(heading: str) -> None:
    lines = SECTIONS[heading]
    found = commands(lines)
    assert found, f"{heading}: no `Command` line"
    assert all(found), f"{heading}: a `Command` line without a command: {found}"
    assert any(facts(lines, "Machine")), f"{heading}: no `- Machine:`"
    commits = [c for line in facts(lines, "Commit") for c in HEX.findall(line)]
    assert commits, f"{heading}: no `- Commit:` with a commit id"
    assert any(DATE.search(x) for x in facts(lines, "Date")), f"{heading}: no YYYY-MM-DD"


def test_every_commit_named_resolves() -> None:
    if not in_git():
        pytest.skip("not a full git checkout")
    for heading, lines in SECTIONS.items():
        for commit in (c for line in facts(lines, "Commit") for c in HEX.findall(line)):
            known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT,
                                   capture_output=True)
            assert known.returncode == 0, f"{heading}: {commit} is not a commit here"


def test_every_image_exists() -> None:
    paths = IMAGE.findall(DOC.read_text())
    assert paths
    assert [p for p in paths if not (ROOT / p).is_file()] == []


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-")


def test_every_index_link_finds_its_heading() -> None:
    text = DOC.read_text()
    anchors = {anchor(h) for h in headings(text)}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert {anchor(h) for h in SECTIONS} <= set(links), "a section missing from the index"
    assert [x for x in links if x not in anchors] == []


def citations() -> list[tuple[str, str]]:
    found = []
    code = [p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py")]
    docs = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *ROOT.glob("*/README.md")]
    for path in code + docs:
        if path == Path(__file__).resolve():
            continue
        text = re.sub(r"\n\s*#\s*", " ", path.read_text())  # comments read as one line
        names = QUOTED.findall(text) + (PLAIN.findall(text) if path.suffix == ".py" else [])
        found += [(str(path.relative_to(ROOT)), " ".join(name.split())) for name in names]
    return found


def test_every_cited_section_exists() -> None:
    named = [f" {words(h)} " for h in headings(DOC.read_text())]
    cited = citations()
    assert cited, "no section citations found: has their form changed?"
    missing = [(path, name) for path, name in cited
               if not any(f" {words(name)} " in h for h in named)]
    assert missing == []
