"""The chart's files against the code they package: no helm needed, so these run everywhere."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kopf._cogs.structs import references
from prometheus_client.metrics import MetricWrapperBase

from celeriac.controller import metrics
from celeriac.controller.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "celeriac"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of a -f file onto the defaults: maps merge, everything else replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("example", ["values-ha.yaml", "values-namespaced.yaml"])
def test_defaults_and_examples_satisfy_the_schema(example: str) -> None:
    jsonschema.validate(DEFAULTS, SCHEMA)
    override = yaml.safe_load((ROOT / "deploy" / "examples" / example).read_text())
    jsonschema.validate(merged(DEFAULTS, override), SCHEMA)


def test_schema_closes_every_object_the_chart_defines() -> None:
    """A typo at any depth fails the install; only pass-through Kubernetes objects stay open."""
    open_objects: list[str] = []

    def walk(node: dict[str, Any], where: str) -> None:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[1]
            walk(SCHEMA["definitions"][name], where)
            return
        # Closed: no extra keys, or extra keys whose values are typed (string maps).
        extra = node.get("additionalProperties", True)
        if node.get("type") == "object" and extra is True:
            open_objects.append(where)
        for key, child in node.get("properties", {}).items():
            walk(child, f"{where}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{where}[]")

    walk(SCHEMA, "values")
    # Kubernetes types handed to the pod spec as they are (the apiserver validates them).
    assert open_objects == [
        "values.global",
        "values.extraEnv[]",
        "values.tolerations[]",
        "values.affinity",
        "values.topologySpreadConstraints[]",
        "values.networkPolicy.ingressFrom[]",
    ]


def test_schema_rejects_a_misspelt_nested_key() -> None:
    bad = merged(DEFAULTS, {"networkPolicy": {"redis": {"port": [6379]}}})
    with pytest.raises(jsonschema.ValidationError, match="'port' was unexpected"):
        jsonschema.validate(bad, SCHEMA)


def test_value_defaults_are_the_operator_defaults() -> None:
    settings = OperatorSettings()
    assert DEFAULTS["ports"] == {"metrics": settings.metrics_port, "health": settings.health_port}
    assert DEFAULTS["logging"] == {"format": settings.log_format, "level": settings.log_level}
    assert DEFAULTS["watchNamespaces"] == settings.namespaces
    assert DEFAULTS["peering"]["name"] == ""
    assert settings.peering is None
    assert SCHEMA["properties"]["logging"]["properties"]["level"]["enum"] == [
        "DEBUG",
        "INFO",
        "WARNING",
        "ERROR",
    ]


def test_every_env_var_the_chart_sets_is_an_operator_setting() -> None:
    template = (CHART / "templates" / "deployment.yaml").read_text()
    names = re.findall(r"name: CELERIAC_([A-Z_]+)", template)
    assert names == [
        "NAMESPACES",
        "METRICS_PORT",
        "HEALTH_PORT",
        "LOG_FORMAT",
        "LOG_LEVEL",
        "POD_METRICS",
        "PEERING",
    ]
    assert {n.lower() for n in names} <= set(OperatorSettings.model_fields)


def test_chart_version_follows_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    assert chart["apiVersion"] == "v2"
    assert chart["kubeVersion"] == ">=1.27.0-0"


def test_peering_crds_are_the_ones_kopf_uses() -> None:
    crds = {
        doc["spec"]["names"]["plural"]: doc
        for doc in yaml.safe_load_all((CHART / "crds" / "kopfpeerings.kopf.dev.yaml").read_text())
    }
    for selector, scope in (
        (references.CLUSTER_PEERINGS_K, "Cluster"),
        (references.NAMESPACED_PEERINGS_K, "Namespaced"),
    ):
        crd = crds.pop(selector.any_name)
        assert crd["metadata"]["name"] == f"{selector.any_name}.{selector.group}"
        assert crd["spec"]["group"] == selector.group
        assert [v["name"] for v in crd["spec"]["versions"]] == [selector.version]
        assert crd["spec"]["scope"] == scope
        # kopf writes the peers' heartbeats under .status, free-form.
        status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert status == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert crds == {}


def registered_metrics() -> set[str]:
    return {m._name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}


def test_dashboard_charts_the_operator_metrics() -> None:
    dashboard = json.loads((CHART / "dashboards" / "celeriac.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for expr in exprs
        for name in re.findall(r"\bceleriac_[a-z_]+", expr)
    }
    assert used == {
        "celeriac_desired_replicas",
        "celeriac_current_replicas",
        "celeriac_queue_backlog",
        "celeriac_queue_oldest_age_seconds",
        "celeriac_scaling_actions_total",
        "celeriac_reconcile_seconds",
        "celeriac_reconcile_errors_total",
        "celeriac_signal_up",
        "celeriac_pool_mode",
    }
    # prometheus_client keeps a Counter's name without _total.
    assert {re.sub(r"_total$", "", n) for n in used} <= registered_metrics()
    assert "sum by (namespace, pool, queue, state)" in " ".join(exprs)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_dashboard_configmap_is_labelled_for_the_grafana_sidecar() -> None:
    assert DEFAULTS["grafanaDashboard"]["labels"] == {"grafana_dashboard": "1"}
    template = (CHART / "templates" / "dashboard.yaml").read_text()
    assert '.Files.Get "dashboards/celeriac.json"' in template
