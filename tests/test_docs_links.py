"""The code cites docs that are in the repository, and only those."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for top in ("neurodeploy", "exporters", "runtimes", "benchmarks", "examples")
           for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".json", ".html", ".md") and p.is_file()]


def test_every_cited_doc_exists():
    cited = {}
    for path in SOURCES + [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name in re.findall(r"docs/([\w.-]+\.md)", path.read_text(encoding="utf-8")):
            cited.setdefault(name, path)
    assert cited, "no docs cited at all"
    missing = {name: str(path.relative_to(ROOT)) for name, path in cited.items() if not (ROOT / "docs" / name).is_file()}
    assert not missing, missing


def test_no_design_documents_outside_the_repository_are_cited():
    outside = re.compile(r"DESIGN\.md|REFERENCE\.md|\.\./shared")
    offenders = [str(p.relative_to(ROOT)) for p in SOURCES + [ROOT / "README.md"] if outside.search(p.read_text(encoding="utf-8"))]
    assert not offenders, offenders
