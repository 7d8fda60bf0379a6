"""The structure figures issue 20 is judged by, from the source alone (no imports).

Usage:
    python benchmarks/structure.py [--top 15]

Per package (contracts, stores, models, serving with serving/events apart,
recstack with recstack/cli apart): files, lines, functions over 60 lines,
`type: ignore` comments, and reads of the environment (`os.environ`, `os.getenv`,
`Settings.from_env`); then the longest functions, and the imports between layers
(contracts at the bottom, then feature_repo, stores, models, serving, and the CLI
in recstack/ on top), each arrow marked where it runs back up. Prints Markdown.
"""

from __future__ import annotations

import argparse
import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOPS = ("contracts", "feature_repo", "stores", "models", "serving", "recstack")
PACKAGES = ("contracts", "feature_repo", "stores", "models", "serving", "serving/events",
            "recstack", "recstack/cli")
LONG = 60
IGNORE = re.compile(r"#\s*type:\s*ignore")
ENVIRONMENT = re.compile(r"os\.environ|os\.getenv|from_env\(")
LAYERS = TOPS  # bottom to top


@dataclass
class Figures:
    files: int = 0
    lines: int = 0
    long_functions: int = 0
    ignores: int = 0
    environment_reads: int = 0
    functions: list[tuple[int, str]] = field(default_factory=list)


def package_of(path: Path) -> str:
    relative = path.relative_to(ROOT).as_posix()
    for sub in ("recstack/cli", "serving/events"):
        if relative.startswith(sub + "/"):
            return sub
    return relative.split("/")[0]


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name (its top-level package); None outside ours."""
    top = module.split(".")[0]
    return top if top in LAYERS else None


def imports_between_layers() -> dict[tuple[str, str], int]:
    """(importing layer, imported layer) -> distinct module pairs, function-level
    imports included."""
    pairs: set[tuple[str, str]] = set()
    for top in TOPS:
        for path in sorted((ROOT / top).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    pairs.add((module, node.module))
                elif isinstance(node, ast.Import):
                    pairs.update((module, alias.name) for alias in node.names)
    edges: dict[tuple[str, str], int] = {}
    for importer, imported in pairs:
        a, b = layer_of(importer), layer_of(imported)
        if a and b and a != b:
            edges[(a, b)] = edges.get((a, b), 0) + 1
    return dict(sorted(edges.items()))


def measure() -> dict[str, Figures]:
    figures = {name: Figures() for name in PACKAGES}
    for top in TOPS:
        for path in sorted((ROOT / top).rglob("*.py")):
            text = path.read_text()
            into = figures[package_of(path)]
            into.files += 1
            into.lines += text.count("\n")
            into.ignores += len(IGNORE.findall(text))
            into.environment_reads += len(ENVIRONMENT.findall(text))
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    where = f"{path.relative_to(ROOT).as_posix()}:{node.lineno} {node.name}"
                    into.functions.append((length, where))
                    into.long_functions += length > LONG
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    figures = measure()
    print(f"| package | files | lines | functions over {LONG} lines | `type: ignore` | "
          "environment reads |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, f in figures.items():
        print(f"| {name} | {f.files} | {f.lines:,} | {f.long_functions} | {f.ignores} | "
              f"{f.environment_reads} |")
    print("\nLongest functions:\n\n| lines | function |\n|---:|---|")
    everything = sorted((fn for f in figures.values() for fn in f.functions), reverse=True)
    for length, where in everything[:args.top]:
        print(f"| {length} | `{where}` |")
    print("\nImports between layers (module pairs):\n\n| from | to | imports | direction |\n"
          "|---|---|---:|---|")
    for (a, b), n in imports_between_layers().items():
        against = LAYERS.index(b) > LAYERS.index(a)
        print(f"| {a} | {b} | {n} | {'against (up)' if against else 'down'} |")


if __name__ == "__main__":
    main()
