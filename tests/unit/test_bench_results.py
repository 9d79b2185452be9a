"""Every number in bench/results comes from a script a reader can run: each results file
names an existing script in bench/ and the machine it ran on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = sorted((ROOT / "bench" / "results").glob("*.md"))


def test_there_are_results_to_check() -> None:
    assert RESULTS


@pytest.mark.parametrize("result", RESULTS, ids=lambda p: p.name)
def test_a_results_file_names_the_script_that_printed_it_and_the_machine(result: Path) -> None:
    text = result.read_text()
    scripts = set(re.findall(r"bench/[A-Za-z0-9_]+\.py", text))
    assert scripts, f"{result.name} names no bench/ script"
    missing = sorted(s for s in scripts if not (ROOT / s).is_file())
    assert missing == [], f"{result.name} names scripts that do not exist: {missing}"
    # The simulator's numbers do not depend on the machine; everything else does.
    assert re.search(r"\b(2[- ]core|2 cores|machine|simulator)\b", text), (
        f"{result.name} does not say what machine it ran on"
    )
