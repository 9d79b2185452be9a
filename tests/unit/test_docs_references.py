"""Every repository path the docs name exists, and every `make` target the README names is
in the Makefile: a newcomer follows them literally (issue #12 found two that did not exist)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "deploy" / "celeriac" / "README.md",
]
TOP_LEVEL = {p.name for p in ROOT.iterdir() if not p.name.startswith(".git")}
CODE_SPAN = re.compile(r"`([^`\s]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _expand_braces(token: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", token)
    if match is None:
        return [token]
    head, tail = token[: match.start()], token[match.end() :]
    return [x for part in match.group(1).split(",") for x in _expand_braces(head + part + tail)]


def _named_paths(doc: Path) -> list[tuple[str, list[Path]]]:
    """(as written, where it may live): code spans from the repository root or, for a
    chart's README, from the chart; links relative to the document."""
    text = doc.read_text()
    found: list[tuple[str, list[Path]]] = []
    local = {p.name for p in doc.parent.iterdir()}
    for token in CODE_SPAN.findall(text):
        for candidate in _expand_braces(token.split("::")[0].split("#")[0].rstrip(":.,")):
            first = candidate.split("/")[0]
            if "*" in candidate or ("/" not in candidate and "." not in candidate):
                continue
            if first in TOP_LEVEL:
                found.append((token, [ROOT / candidate, doc.parent / candidate]))
            elif first in local and doc.parent != ROOT:
                found.append((token, [doc.parent / candidate]))
    for target in LINK.findall(text):
        if "://" in target or target.startswith("#"):
            continue
        found.append((target, [(doc.parent / target.split("#")[0]).resolve()]))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_a_doc_names_exists(doc: Path) -> None:
    missing = [token for token, paths in _named_paths(doc) if not any(p.exists() for p in paths)]
    assert missing == [], f"{doc.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_the_docs_name_repository_paths_at_all() -> None:
    # Guards the check above against a regex that silently matches nothing.
    assert len(_named_paths(ROOT / "README.md")) >= 10


def test_every_make_target_the_readme_names_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`make ([a-z][a-z0-9-]*)", readme))
    makefile = (ROOT / "Makefile").read_text()
    defined = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, flags=re.MULTILINE))
    assert {"demo", "test"} <= named
    assert named - defined == set()


def test_ci_runs_both_readme_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make demo" in ci
    assert "make test" in ci
