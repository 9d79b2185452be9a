"""The CRD is generated from the pydantic models; these tests keep the two from drifting."""

from pathlib import Path

import yaml

from celeriac.api import crd, pool

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_crd_matches_the_models() -> None:
    for path in (crd.CRD_FILE, crd.CHART_CRD_FILE):
        on_disk = (ROOT / path).read_text()
        assert on_disk == crd.render_yaml(), f"{path} is stale: run `celeriac crd --write`"


def test_crd_schema_is_structural() -> None:
    """Every node typed, no $ref / anyOf / title left over from pydantic."""
    schema = crd.render_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            for banned in ("$ref", "anyOf", "oneOf", "$defs", "title", "const"):
                assert banned not in node, f"{banned} at {where}"
            if (
                "properties" in node
                or "items" in node
                or "x-kubernetes-preserve-unknown-fields" in node
            ):
                assert "type" in node, f"untyped node at {where}"
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]")

    walk(schema, "openAPIV3Schema")


def test_crd_defaults_equal_the_model_defaults() -> None:
    """What the apiserver fills in is what the operator assumes when a field is absent."""
    spec_schema = crd.render_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"
    ]["spec"]
    scaling = spec_schema["properties"]["scaling"]["properties"]
    defaults = pool.Scaling()
    assert scaling["minReplicas"]["default"] == defaults.min_replicas
    assert scaling["maxReplicas"]["default"] == defaults.max_replicas
    assert scaling["targetQueueWaitSeconds"]["default"] == defaults.target_queue_wait_seconds
    scale_down = scaling["behavior"]["properties"]["scaleDown"]["default"]
    assert scale_down == defaults.behavior.scale_down.model_dump(by_alias=True, mode="json")
    steps = spec_schema["properties"]["broker"]["properties"]["transport"]["properties"][
        "prioritySteps"
    ]
    assert steps["default"] == [0, 3, 6, 9]


def test_sample_pool_is_valid_for_the_models() -> None:
    docs = yaml.safe_load_all((ROOT / "deploy/examples/pool.yaml").read_text())
    sample = next(d for d in docs if d["kind"] == pool.KIND)
    spec = pool.CeleryWorkerPoolSpec.model_validate(sample["spec"])
    assert spec.queues == ["celery", "emails", "reports"]
    assert spec.scaling.max_replicas >= spec.scaling.min_replicas


def test_scale_subresource_and_printer_columns() -> None:
    version = crd.render_crd()["spec"]["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Desired", "Ready", "Backlog", "CPU%", "Range", "Reason", "Age"]


def test_every_cel_rule_has_a_python_twin_with_the_same_message() -> None:
    for model, rules in pool.CEL_RULES.items():
        twins = [message for message, _ in pool._PY_RULES[model]]
        assert twins == [r["message"] for r in rules], model
