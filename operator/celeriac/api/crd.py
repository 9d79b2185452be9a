"""Renders the CustomResourceDefinition from the pydantic models.

The apiserver wants a *structural* schema: every node typed, no $ref, no anyOf of
types. Pydantic emits $defs, anyOf[X, null] for optionals and titles; this module
folds those into the Kubernetes dialect so the models stay the only source of truth.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from celeriac.api import pool, status

CRD_FILE = Path("crds") / f"{pool.PLURAL}.{pool.GROUP}.yaml"
CHART_CRD_FILE = Path("deploy") / "celeriac" / "crds" / f"{pool.PLURAL}.{pool.GROUP}.yaml"

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Backlog", "type": "integer", "jsonPath": ".status.backlog"},
    {"name": "CPU%", "type": "integer", "jsonPath": ".status.cpuPercent"},
    {
        "name": "Range",
        "type": "string",
        "jsonPath": ".status.podRange",
        "description": "Per-pod --autoscale min-max the operator applies",
    },
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

_DROP_KEYS = {"title"}


class _KubernetesDefaults(GenerateJsonSchema):
    """Emits defaults that come from factories, so the apiserver applies them too."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None:
            return schema.get("default", NoDefault)
        if isinstance(factory, type) and issubclass(factory, BaseModel):
            # {} lets the nested fields' own defaults apply, and reads better in the CRD.
            return {}
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return value.model_dump(by_alias=True, mode="json", exclude_none=True)
        return value


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        target = _resolve(copy.deepcopy(defs[name]), defs)
        rules = pool.CEL_RULES.get(name)
        if rules:
            target[pool.CEL] = rules
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **_resolve(extra, defs)}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS and isinstance(value, str):
            continue
        if key == "properties":
            out[key] = {name: _resolve(prop, defs) for name, prop in value.items()}
        else:
            out[key] = _resolve(value, defs)
    return _fold_optional(out)


def _fold_optional(node: dict[str, Any]) -> dict[str, Any]:
    """anyOf[X, {type: null}] -> X: absence already means "not set" in Kubernetes."""
    variants = node.get("anyOf")
    if not isinstance(variants, list):
        return node
    non_null = [v for v in variants if v.get("type") != "null"]
    if len(non_null) != 1:
        return node
    merged = {**non_null[0], **{k: v for k, v in node.items() if k != "anyOf"}}
    if merged.get("default", "") is None:
        del merged["default"]
    return merged


def _structural(node: Any) -> Any:
    """Kubernetes needs `type: object` on maps and preserved objects; enums of strings typed."""
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _structural(v) for k, v in node.items()}
    # JSON Schema 2020 spells exclusive bounds as numbers; OpenAPI v3.0 as booleans.
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        value = node.get(flag)
        if isinstance(value, int | float) and not isinstance(value, bool):
            node[bound] = value
            node[flag] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    if node.get("x-kubernetes-preserve-unknown-fields") and "type" not in node:
        node["type"] = "object"
    if node.get("type") == "object" and "properties" in node:
        node.pop("additionalProperties", None)
    if node.get("type") == "object" and node.get("additionalProperties") is True:
        node.pop("additionalProperties")
        node["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("type") == "object" and node.get("x-kubernetes-preserve-unknown-fields"):
        node.pop("additionalProperties", None)
    return node


def _default_nested_objects(node: Any) -> Any:
    """An object property whose fields all have defaults defaults to {} so nested defaults apply."""
    if isinstance(node, list):
        return [_default_nested_objects(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _default_nested_objects(v) for k, v in node.items()}
    props = node.get("properties")
    if isinstance(props, dict):
        required = set(node.get("required", []))
        for name, prop in props.items():
            if (
                name not in required
                and isinstance(prop, dict)
                and prop.get("type") == "object"
                and "properties" in prop
                and "default" not in prop
                and not prop.get("required")
            ):
                prop["default"] = {}
    return node


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_KubernetesDefaults
    )
    defs = raw.pop("$defs", {})
    schema = _resolve(raw, defs)
    rules = pool.CEL_RULES.get(model.__name__)
    if rules:
        schema[pool.CEL] = rules
    return _default_nested_objects(_structural(schema))  # type: ignore[no-any-return]


def _status_schema() -> dict[str, Any]:
    return openapi_schema(status.CeleryWorkerPoolStatus)


POOL_NAME_MESSAGE = (
    f"metadata.name must be at most {pool.MAX_NAME_LENGTH} characters: it becomes the"
    " celeriac.dev/pool label value and '<name>-workers' pod names (63-character limits)"
)


def render_crd() -> dict[str, Any]:
    spec_schema = openapi_schema(pool.CeleryWorkerPoolSpec)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{pool.PLURAL}.{pool.GROUP}"},
        "spec": {
            "group": pool.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": pool.KIND,
                "listKind": f"{pool.KIND}List",
                "plural": pool.PLURAL,
                "singular": pool.SINGULAR,
                "shortNames": pool.SHORT_NAMES,
                "categories": ["all", "celeriac"],
            },
            "versions": [
                {
                    "name": pool.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A pool of Celery workers that celeriac scales.",
                            "required": ["spec"],
                            pool.CEL: [
                                {
                                    "rule": f"size(self.metadata.name) <= {pool.MAX_NAME_LENGTH}",
                                    "message": POOL_NAME_MESSAGE,
                                }
                            ],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": _status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


def render_yaml() -> str:
    header = "# Generated by `celeriac crd --write` from celeriac.api.pool. Do not edit.\n"
    return header + yaml.safe_dump(render_crd(), sort_keys=False, width=100)


def _run(args: argparse.Namespace) -> int:
    text = render_yaml()
    if not args.write:
        sys.stdout.write(text)
        return 0
    for path in (CRD_FILE, CHART_CRD_FILE):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("crd", help="print or write the CeleryWorkerPool CRD")
    parser.add_argument(
        "--write", action="store_true", help=f"write {CRD_FILE} and {CHART_CRD_FILE}"
    )
    parser.set_defaults(func=_run)
