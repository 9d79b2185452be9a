"""The release workflow against what it publishes: the images the chart and the examples name,
built from this repository's Dockerfiles for both architectures, and a file actionlint accepts."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_FILE = ROOT / ".github" / "workflows" / "release.yml"
WORKFLOW: dict[Any, Any] = yaml.safe_load(WORKFLOW_FILE.read_text())
CHART = yaml.safe_load((ROOT / "deploy" / "celeriac" / "Chart.yaml").read_text())
VALUES = yaml.safe_load((ROOT / "deploy" / "celeriac" / "values.yaml").read_text())
ACTIONLINT_VERSION = "v1.7.12"


def image_prefix() -> str:
    """The workflow's IMAGE_PREFIX for the project's own repository (the chart's home)."""
    owner = re.fullmatch(r"https://github\.com/([^/]+)/[^/]+", CHART["home"])
    assert owner is not None, CHART["home"]
    template: str = WORKFLOW["env"]["IMAGE_PREFIX"]
    return template.replace("${{ github.repository_owner }}", owner.group(1))


def matrix() -> list[dict[str, str]]:
    include: list[dict[str, str]] = WORKFLOW["jobs"]["images"]["strategy"]["matrix"]["include"]
    return include


def test_release_pushes_the_operator_image_the_chart_installs_by_default() -> None:
    names = [entry["name"] for entry in matrix()]
    assert names == ["operator", "worker"]
    assert (
        f"{image_prefix()}/operator" == VALUES["image"]["repository"] == "ghcr.io/celeriac/operator"
    )


def test_release_pushes_the_worker_image_the_example_pool_runs() -> None:
    documents = list(yaml.safe_load_all((ROOT / "deploy" / "examples" / "pool.yaml").read_text()))
    pools = [d for d in documents if d and d.get("kind") == "CeleryWorkerPool"]
    assert len(pools) == 1
    image: str = pools[0]["spec"]["template"]["image"]
    assert image == f"{image_prefix()}/worker:{CHART['appVersion']}"


def test_release_builds_each_dockerfile_in_its_context_for_amd64_and_arm64() -> None:
    for entry in matrix():
        context = ROOT / entry["context"]
        dockerfile = ROOT / entry["file"]
        assert dockerfile.is_file(), entry
        assert context.is_dir(), entry
        assert dockerfile.read_text().startswith("#")
        assert "ARG BASE_IMAGE=python:3.11-slim" in dockerfile.read_text()
    assert WORKFLOW["env"]["PLATFORMS"].split(",") == ["linux/amd64", "linux/arm64"]
    # PyYAML reads the bare `on:` key as the boolean True (YAML 1.1).
    assert WORKFLOW[True] == {"push": {"tags": ["v*.*.*"]}}


def actionlint() -> Path:
    cache = Path(os.environ.get("CELERIAC_CACHE", Path.home() / ".cache" / "celeriac"))
    binary = cache / "bin" / f"actionlint-{ACTIONLINT_VERSION}" / "actionlint"
    assert binary.is_file(), f"{binary} missing: run `make ci-tools` (hack/build-actionlint.sh)"
    return binary


def test_release_workflow_passes_actionlint() -> None:
    result = subprocess.run(
        [str(actionlint()), "-no-color", str(WORKFLOW_FILE.relative_to(ROOT))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    """The check above can fail: the same workflow with an unknown job output reference."""
    broken = WORKFLOW_FILE.read_text().replace(
        "needs.versions.outputs.version", "needs.versions.outputs.no_such_output"
    )
    assert broken != WORKFLOW_FILE.read_text()
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "release.yml").write_text(broken)
    result = subprocess.run(
        [str(actionlint()), "-no-color", ".github/workflows/release.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "no_such_output" in result.stdout
