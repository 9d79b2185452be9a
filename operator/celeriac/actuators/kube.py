"""The operator's only door to the Kubernetes API (besides kopf's own watches).

Everything goes in and out as plain JSON dicts (`_preload_content=False`), so the rest of
the operator never depends on the client's generated model classes.
"""

from __future__ import annotations

import base64
import json
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from celeriac.actuators.render import FIELD_MANAGER
from celeriac.api import pool as api

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


class SecretError(RuntimeError):
    """The pool's broker Secret is missing or lacks the key: the message says which."""


class ScaleTargetError(RuntimeError):
    """The pool's scaleTargetRef cannot be read: the message names it and why."""


def load_config(kubeconfig: str | None = None, connections: int | None = None) -> client.ApiClient:
    """A client whose connection pool holds `connections` (the client's default is 5 per
    CPU: more threads than that writing at once each open a connection and drop it)."""
    if kubeconfig:
        api_client = config.new_client_from_config(config_file=kubeconfig)
    else:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        api_client = client.ApiClient()
    if connections is None:
        return api_client
    configuration = api_client.configuration
    configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration)


def _json(response: Any) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(response.data))


def _drained(response: Any) -> None:
    """Reads a response nobody needs: urllib3 returns a connection to the pool only once
    its body is read, so an unread PATCH answer cost a new TLS connection per write."""
    response.data  # noqa: B018 - reading is the point
    response.release_conn()


def _secret_value(secret: dict[str, Any], namespace: str, name: str, key: str) -> str:
    # Whoever creates a pool may name any Secret of the namespace: no message here may carry
    # a byte of its value, nor the names of its other keys (issue #14).
    data = secret.get("data")
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, str):
        raise SecretError(
            f"Secret {namespace}/{name} has no key {key!r} (spec.broker.urlSecretRef.key)"
        )
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError; both quote the bytes
        raise SecretError(
            f"Secret {namespace}/{name} key {key!r} is not UTF-8 text: not a broker URL"
        ) from None


class Kube:
    def __init__(self, api_client: client.ApiClient, timeout_s: float = 10.0) -> None:
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.timeout_s = timeout_s
        self._plurals: dict[tuple[str, str, str], str] = {}

    # --- a user's own workload, through its /scale subresource ------------------------------

    def _plural(self, target: api.ScaleTargetRef) -> str:
        """The resource name of a kind, from the group's discovery document (cached): a
        guessed plural would miss kinds like `Proxy` -> `proxies`."""
        key = (target.group, target.version, target.kind)
        if key not in self._plurals:
            found = _json(
                self.custom.get_api_resources(
                    target.group,
                    target.version,
                    _preload_content=False,
                    _request_timeout=self.timeout_s,
                )
            )
            for resource in found.get("resources", []):
                if resource.get("kind") == target.kind and "/" not in resource.get("name", "/"):
                    self._plurals[key] = resource["name"]
                    break
            else:
                raise ScaleTargetError(f"{target.api_version} has no kind {target.kind}")
        return self._plurals[key]

    def read_scale_target(
        self, namespace: str, target: api.ScaleTargetRef
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The target object (its managedFields say who set the replicas) and its Scale."""
        try:
            args = (target.group, target.version, namespace, self._plural(target), target.name)
            body = _json(
                self.custom.get_namespaced_custom_object(
                    *args, _preload_content=False, _request_timeout=self.timeout_s
                )
            )
            scale = _json(
                self.custom.get_namespaced_custom_object_scale(
                    *args, _preload_content=False, _request_timeout=self.timeout_s
                )
            )
        except ApiException as exc:
            if exc.status in (403, 404):
                what = "not found" if exc.status == 404 else "not readable by the operator (RBAC)"
                raise ScaleTargetError(
                    f"{target.kind} {namespace}/{target.name} {what} (spec.scaleTargetRef)"
                ) from exc
            raise
        return body, scale

    def scale_target(self, namespace: str, target: api.ScaleTargetRef, replicas: int) -> None:
        """Only spec.replicas, through /scale, as celeriac's field manager: the template and
        everything else stay the owner's."""
        self.custom.patch_namespaced_custom_object_scale(
            target.group,
            target.version,
            namespace,
            self._plural(target),
            target.name,
            {"spec": {"replicas": replicas}},
            field_manager=FIELD_MANAGER,
            _content_type=MERGE,
            _preload_content=False,
            _request_timeout=self.timeout_s,
        )

    def read_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _json(
                self.apps.read_namespaced_deployment(
                    name, namespace, _preload_content=False, _request_timeout=self.timeout_s
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def apply_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply: a no-op when nothing changed, and it reclaims fields edited by hand."""
        meta = body["metadata"]
        return _json(
            self.apps.patch_namespaced_deployment(
                meta["name"],
                meta["namespace"],
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=APPLY,
                _preload_content=False,
                _request_timeout=self.timeout_s,
            )
        )

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        """Only the replica count, as celeriac's field manager (so a later hand edit shows
        up as another manager owning spec.replicas)."""
        response = self.apps.patch_namespaced_deployment(
            name,
            namespace,
            {"spec": {"replicas": replicas}},
            field_manager=FIELD_MANAGER,
            _content_type=MERGE,
            _preload_content=False,
            _request_timeout=self.timeout_s,
        )
        _drained(response)

    def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        try:
            secret = _json(
                self.core.read_namespaced_secret(
                    name, namespace, _preload_content=False, _request_timeout=self.timeout_s
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                raise SecretError(
                    f"Secret {namespace}/{name} not found (spec.broker.urlSecretRef.name)"
                ) from exc
            if exc.status == 403:
                raise SecretError(
                    f"operator may not read Secret {namespace}/{name}: check its RBAC"
                ) from exc
            raise
        return _secret_value(secret, namespace, name, key)

    def patch_pool_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        response = self.custom.patch_namespaced_custom_object_status(
            api.GROUP,
            api.VERSION,
            namespace,
            api.PLURAL,
            name,
            {"status": status},
            _content_type=MERGE,
            _preload_content=False,
            _request_timeout=self.timeout_s,
        )
        _drained(response)

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        pods = _json(
            self.core.list_namespaced_pod(
                namespace,
                label_selector=selector,
                _preload_content=False,
                _request_timeout=self.timeout_s,
            )
        )
        return cast(list[dict[str, Any]], pods.get("items", []))

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        """A pod already gone is not an error: the watch that listed it lags its deletion (a
        404 here failed whole ticks of pools scaling in, bench_scale.py at 500 pools)."""
        try:
            response = self.core.patch_namespaced_pod(
                name,
                namespace,
                {"metadata": {"annotations": annotations}},
                _content_type=MERGE,
                _preload_content=False,
                _request_timeout=self.timeout_s,
            )
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        _drained(response)
