"""Every module of contracts/, stores/, models/, serving/ and recstack/ is listed in its package's
README.md, by its path (`ranker/model.py`) or a folder above it (`ranker/`): a new
module without its line fails here, not in a newcomer's first hour."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("contracts", "stores", "models", "serving", "recstack")


def unlisted(package: str) -> list[str]:
    text = (ROOT / package / "README.md").read_text()
    missing = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if path.name == "__init__.py":
            continue
        parts = path.relative_to(ROOT / package).parts
        names = ["/".join(parts), *("/".join(parts[:n]) + "/" for n in range(1, len(parts)))]
        if not any(f"`{name}`" in text for name in names):
            missing.append("/".join(parts))
    return missing


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_is_in_its_packages_readme(package: str) -> None:
    assert unlisted(package) == [], f"add these to {package}/README.md's table"
