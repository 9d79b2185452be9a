"""The Helm chart: lints, renders valid Kubernetes 1.32 objects, refuses bad values, installs,
grants the operator exactly what it needs, upgrades and uninstalls without leftovers."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from celeriac_dev.controlplane import ControlPlane, find_binaries

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "celeriac"
EXAMPLES = ROOT / "deploy" / "examples"
KUBE_VERSION = "1.32.0"
CRDS = ("celeryworkerpools.celeriac.dev", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev")
# Every kind the chart can render that a release owns, namespaced and cluster-scoped.
NAMESPACED_KINDS = (
    "deployments.apps,pods,services,serviceaccounts,configmaps,poddisruptionbudgets.policy,"
    "networkpolicies.networking.k8s.io,roles.rbac.authorization.k8s.io,"
    "rolebindings.rbac.authorization.k8s.io,kopfpeerings.kopf.dev"
)
CLUSTER_KINDS = (
    "clusterroles.rbac.authorization.k8s.io,clusterrolebindings.rbac.authorization.k8s.io,"
    "clusterkopfpeerings.kopf.dev,"
    "validatingadmissionpolicies.admissionregistration.k8s.io,"
    "validatingadmissionpolicybindings.admissionregistration.k8s.io"
)


@dataclass
class Helm:
    binary: Path
    home: Path

    def run(
        self, *args: str, kubeconfig: Path | None = None, timeout_s: float = 300
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        cmd = [str(self.binary), *args]
        if kubeconfig is not None:
            cmd += ["--kubeconfig", str(kubeconfig)]
        return subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout_s, check=False
        )

    def ok(self, *args: str, kubeconfig: Path | None = None) -> str:
        result = self.run(*args, kubeconfig=kubeconfig)
        assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout

    def template(self, *args: str) -> list[dict[str, Any]]:
        out = self.ok(
            "template", "rel", str(CHART), "-n", "ops", "--kube-version", KUBE_VERSION, *args
        )
        return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(find_binaries() / "helm", tmp_path_factory.mktemp("helm-home"))


# Value sets every offline test runs with: the defaults, both examples, and every option on.
VALUE_SETS: dict[str, tuple[str, ...]] = {
    "default": (),
    "ha": ("-f", str(EXAMPLES / "values-ha.yaml")),
    "namespaced": ("-f", str(EXAMPLES / "values-namespaced.yaml")),
    "everything": (
        "-f", str(EXAMPLES / "values-namespaced.yaml"),
        "--set", "replicaCount=3", "--set", "peering.name=celeriac",
        "--set", "podMonitor.enabled=true", "--set", "grafanaDashboard.enabled=true",
        "--set", "networkPolicy.apiServer.cidrs[0]=10.0.0.1/32",
        "--set", "image.digest=sha256:" + "a" * 64,
    ),
}  # fmt: skip


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_chart_lints_clean(helm: Helm, values: tuple[str, ...]) -> None:
    out = helm.ok("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *values)
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    assert "[WARNING]" not in out
    assert "[ERROR]" not in out


EXPECTED_KINDS = {
    "default": [
        "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
        "CustomResourceDefinition", "CustomResourceDefinition", "Deployment", "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    ],
    "ha": [
        "ClusterKopfPeering", "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding",
        "ConfigMap", "CustomResourceDefinition", "CustomResourceDefinition",
        "CustomResourceDefinition", "Deployment", "PodDisruptionBudget", "Service",
        "ServiceAccount", "ServiceMonitor",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    ],
    "namespaced": [
        "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
        "CustomResourceDefinition", "CustomResourceDefinition", "Deployment", "NetworkPolicy",
        "Role", "Role", "RoleBinding", "RoleBinding", "Service", "ServiceAccount",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    ],
    "everything": [
        "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
        "CustomResourceDefinition",
        "CustomResourceDefinition", "CustomResourceDefinition", "Deployment", "KopfPeering",
        "KopfPeering", "NetworkPolicy", "PodDisruptionBudget", "PodMonitor", "Role", "Role",
        "RoleBinding", "RoleBinding", "Service", "ServiceAccount",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    ],
}  # fmt: skip
# The issue-14 policies (templates/admission.yaml) render only where the cluster serves the
# ValidatingAdmissionPolicy API, which offline `helm template` does not report;
# test_hostile_pools applies them to a real 1.32 apiserver.


def peering_schemas() -> dict[str, dict[str, Any]]:
    crds = yaml.safe_load_all((CHART / "crds" / "kopfpeerings.kopf.dev.yaml").read_text())
    return {
        crd["spec"]["names"]["kind"]: crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for crd in crds
    }


@pytest.mark.parametrize("name", VALUE_SETS.keys())
def test_rendered_objects_validate_against_kubernetes_1_32(helm: Helm, name: str) -> None:
    docs = helm.template("--include-crds", *VALUE_SETS[name])
    assert sorted(doc["kind"] for doc in docs) == EXPECTED_KINDS[name]
    kopf_schemas = peering_schemas()
    for doc in docs:
        where = f"{doc['kind']} {doc['metadata']['name']}"
        group = doc["apiVersion"].split("/")[0]
        if group == "monitoring.coreos.com":
            # ServiceMonitor/PodMonitor are the Prometheus Operator's CRDs, not core Kubernetes:
            # kubernetes-validate has no schema for them. Checked by shape in test_monitors_scrape_the_metrics_port.
            continue
        if group == "kopf.dev":
            # kopf's peering kinds: checked against the CRD schema the chart itself ships.
            jsonschema.validate(doc, kopf_schemas[doc["kind"]])
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where} is not a valid Kubernetes {KUBE_VERSION} object: {exc}")


def test_offline_validation_catches_a_misspelt_field(helm: Helm) -> None:
    """The check above is strict: an unknown field in the Deployment is caught, not ignored."""
    (deployment,) = [d for d in helm.template() if d["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


def test_monitors_scrape_the_metrics_port(helm: Helm) -> None:
    docs = helm.template(
        "--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.labels.release=prom"
    )
    by_kind = {d["kind"]: d for d in docs}
    monitor = by_kind["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert monitor["spec"]["selector"]["matchLabels"] == by_kind["Service"]["spec"]["selector"]
    assert by_kind["Service"]["spec"]["ports"][0]["targetPort"] == "metrics"

    (pod_monitor,) = [
        d for d in helm.template("--set", "podMonitor.enabled=true") if d["kind"] == "PodMonitor"
    ]
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert pod_monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "celeriac",
        "app.kubernetes.io/instance": "rel",
    }


def test_dashboard_configmap_carries_the_dashboard_json(helm: Helm) -> None:
    docs = helm.template(
        "--set", "grafanaDashboard.enabled=true", "--set", "grafanaDashboard.namespace=grafana"
    )  # fmt: skip
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert configmap["metadata"]["namespace"] == "grafana"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    rendered = json.loads(configmap["data"]["celeriac.json"])
    assert rendered == json.loads((CHART / "dashboards" / "celeriac.json").read_text())


def test_network_policy_admits_only_metrics_and_health_and_lets_out_only_dns_apiserver_redis(
    helm: Helm,
) -> None:
    docs = helm.template(
        "--set", "networkPolicy.enabled=true",
        "--set-json", 'networkPolicy.ingressFrom=[{"namespaceSelector":{"matchLabels":{"name":"monitoring"}}}]',
        "--set-json", "networkPolicy.apiServer.ports=[6443]",
        "--set-json", 'networkPolicy.apiServer.cidrs=["10.0.0.1/32"]',
        "--set-json", "networkPolicy.redis.ports=[6379,26379]",
    )  # fmt: skip
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [
        {
            "ports": [
                {"port": "metrics", "protocol": "TCP"},
                {"port": "health", "protocol": "TCP"},
            ],
            "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        }
    ]
    assert spec["egress"] == [
        {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        {
            "ports": [{"port": 6443, "protocol": "TCP"}],
            "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
        },
        {"ports": [{"port": 6379, "protocol": "TCP"}, {"port": 26379, "protocol": "TCP"}]},
    ]


def aggregated(doc: dict[str, Any]) -> bool:
    """A role for people (folded into admin/edit/view), not one the operator is bound to."""
    labels = doc["metadata"].get("labels", {})
    return any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in labels)


def rbac_rules(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The rules of the roles the operator's ServiceAccount is bound to."""
    return [
        (f"{d['kind']}/{d['metadata'].get('namespace', '')}/{d['metadata']['name']}", rule)
        for d in docs
        if d["kind"] in ("Role", "ClusterRole") and not aggregated(d)
        for rule in d["rules"]
    ]


def test_pools_join_the_default_admin_edit_and_view_roles(helm: Helm) -> None:
    roles = {d["metadata"]["name"]: d for d in helm.template() if aggregated(d)}
    edit, view = roles["rel-celeriac-pools-edit"], roles["rel-celeriac-pools-view"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert "create" in edit["rules"][0]["verbs"]
    assert view["rules"][0]["verbs"] == ["get", "list", "watch"]


@pytest.mark.parametrize("name", VALUE_SETS.keys())
def test_no_rbac_rule_uses_a_wildcard(helm: Helm, name: str) -> None:
    rules = rbac_rules(helm.template(*VALUE_SETS[name]))
    assert rules, "no Role or ClusterRole rendered"
    for where, rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert not any("*" in item for item in rule.get(field, [])), f"{where}: {rule}"
        # Nothing the operator does needs to delete, escalate, bind or impersonate.
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(
            rule["verbs"]
        ), f"{where}: {rule}"


def test_secrets_are_get_only_and_narrowed_by_secret_names(helm: Helm) -> None:
    def secret_rules(*args: str) -> list[dict[str, Any]]:
        return [r for _, r in rbac_rules(helm.template(*args)) if "secrets" in r["resources"]]

    assert secret_rules() == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    narrowed = secret_rules(
        "--set-json",
        'watchNamespaces=["a","b"]',
        "--set-json",
        'rbac.secretNames=["broker-a","broker-b"]',
    )
    assert narrowed == 2 * [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["broker-a", "broker-b"],
            "verbs": ["get"],
        }
    ]


def test_operator_pod_is_hardened(helm: Helm) -> None:
    (deployment,) = [d for d in helm.template() if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "metrics": 9090,
        "health": 8080,
    }
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert container["image"] == "ghcr.io/celeriac/operator:0.1.0"
    assert container["command"] == ["celeriac", "run"]


BAD_VALUES = {
    "replica count as text": (("--set", "replicaCount=two"), "replicaCount: Invalid type"),
    "zero replicas": (("--set", "replicaCount=0"), "replicaCount: Must be greater than or equal to 1"),
    "unknown top-level key": (("--set", "replicas=2"), "Additional property replicas is not allowed"),
    "unknown nested key": (("--set", "image.tagg=1"), "image: Additional property tagg is not allowed"),
    "log format": (("--set", "logging.format=xml"), "logging.format must be one of the following"),
    "namespace name": (("--set-json", 'watchNamespaces=["Team_A"]'), "watchNamespaces.0: Does not match pattern"),
    "port range": (("--set", "ports.metrics=70000"), "ports.metrics: Must be less than or equal to 65535"),
    "wildcard secret name": (("--set-json", 'rbac.secretNames=["*"]'), "rbac.secretNames.0: Does not match pattern"),
    "redis cidr": (("--set", "networkPolicy.redis.cidrs[0]=redis"), "networkPolicy.redis.cidrs.0: Does not match pattern"),
    "ha without peering": (("--set", "replicaCount=2"), "peering.name: replicaCount is 2, so set peering.name"),
    "same port twice": (("--set", "ports.health=9090"), "ports.health: 9090 is also ports.metrics"),
    "budget blocks drains": (
        ("--set", "replicaCount=2", "--set", "peering.name=p", "--set", "podDisruptionBudget.minAvailable=2"),
        "podDisruptionBudget.minAvailable: 2 would block every node drain",
    ),
    "two monitors": (
        ("--set", "serviceMonitor.enabled=true", "--set", "podMonitor.enabled=true"),
        "serviceMonitor.enabled and podMonitor.enabled: enable one of the two",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("args", "message"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_are_refused_naming_the_field(
    helm: Helm, args: tuple[str, ...], message: str
) -> None:
    result = helm.run("template", "rel", str(CHART), "--kube-version", KUBE_VERSION, *args)
    assert result.returncode == 1, f"accepted {args}:\n{result.stdout[:500]}"
    assert message in result.stderr
    assert result.stdout == ""


# --- against the local control plane -----------------------------------------------------------


def wait_until(what: str, ready: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = ready()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s; last seen: {last!r}")


@dataclass
class Release:
    cluster: ControlPlane
    helm: Helm
    name: str
    namespace: str

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}-celeriac"

    def helm_ok(self, *args: str) -> str:
        return self.helm.ok(*args, "-n", self.namespace, kubeconfig=self.cluster.kubeconfig)

    def install(self, *values: str) -> str:
        return self.helm_ok(
            "install", self.name, str(CHART), "--wait", "--timeout", "240s", *values
        )

    def can(self, verb: str, resource: str, *where: str) -> bool:
        result = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.cluster.kubeconfig), "auth", "can-i", verb, resource,
             "--as", self.user, *where],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        answer = result.stdout.strip()
        # A warning on stderr means kubectl could not resolve the resource: the answer is moot.
        assert not result.stderr, f"kubectl auth can-i {verb} {resource}: {result.stderr!r}"
        assert answer in ("yes", "no"), f"kubectl auth can-i {verb} {resource}: {answer!r}"
        return answer == "yes"

    def reviewed(self, verb: str, group: str, resource: str, namespace: str) -> bool:
        """A SubjectAccessReview, for APIs this cluster does not serve (kubectl can-i needs discovery)."""
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": self.user,
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{self.namespace}"],
                "resourceAttributes": {
                    "verb": verb, "group": group, "resource": resource, "namespace": namespace,
                },
            },
        }  # fmt: skip
        out = self.cluster.kubectl("create", "-f", "-", "-o", "json", input_text=json.dumps(review))
        return bool(json.loads(out)["status"]["allowed"])

    def deployment(self) -> dict[str, Any]:
        out = self.cluster.kubectl(
            "-n", self.namespace, "get", "deploy", f"{self.name}-celeriac", "-o", "json"
        )
        return dict(json.loads(out))

    def leftovers(self) -> list[str]:
        selector = f"app.kubernetes.io/instance={self.name}"
        namespaced = self.cluster.kubectl(
            "get", NAMESPACED_KINDS, "-A", "-l", selector, "-o", "name"
        )
        cluster_scoped = self.cluster.kubectl("get", CLUSTER_KINDS, "-l", selector, "-o", "name")
        release_records = self.cluster.kubectl(
            "-n",
            self.namespace,
            "get",
            "secrets",
            "-l",
            f"owner=helm,name={self.name}",
            "-o",
            "name",
        )
        return (namespaced + cluster_scoped + release_records).split()

    def uninstall_leaves_nothing(self) -> None:
        self.helm_ok("uninstall", self.name, "--wait", "--timeout", "60s")
        wait_until(
            f"no objects of release {self.name} left", lambda: not self.leftovers() or None, 60
        )
        assert self.leftovers() == []
        # Helm never deletes what it installed from crds/ (README.md: how to remove them).
        for crd in CRDS:
            self.cluster.kubectl("get", "crd", crd)


@pytest.fixture
def extra_namespaces(cluster: ControlPlane) -> Iterator[list[str]]:
    names = [f"t-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for name in names:
        cluster.kubectl("create", "namespace", name)
    yield names
    for name in names:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_cluster_wide_install_grants_what_the_operator_needs_and_nothing_else(
    cluster: ControlPlane, helm: Helm, namespace: str, extra_namespaces: list[str]
) -> None:
    release = Release(cluster, helm, f"cw-{uuid.uuid4().hex[:6]}", namespace)
    notes = release.install()
    assert "kubectl apply -n default -f deploy/examples/pool.yaml" in notes
    assert "kubectl get cwp -n default -w" in notes
    for crd in CRDS:
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", f"crd/{crd}")
    deployment = release.deployment()
    assert deployment["status"]["readyReplicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"

    other = extra_namespaces[0]
    can = release.can
    # What the reconcile does, in any namespace.
    assert can("patch", "deployments.apps", "-n", other)
    assert can("create", "deployments.apps", "-n", other)
    assert can("watch", "celeryworkerpools.celeriac.dev", "-A")
    assert can("patch", "celeryworkerpools.celeriac.dev", "--subresource=status", "-n", other)
    assert can("patch", "pods", "-n", other)
    assert can("get", "secrets", "-n", other)
    assert can("create", "events", "-n", other)
    # metrics-server is not running here, so this one goes through a SubjectAccessReview.
    assert release.reviewed("list", "metrics.k8s.io", "pods", other)
    assert not release.reviewed("list", "metrics.k8s.io", "nodes", other)
    assert can("watch", "customresourcedefinitions.apiextensions.k8s.io", "-A")
    assert can("patch", "clusterkopfpeerings.kopf.dev", "-A")
    # What it never does (issue #14, 5: only the verbs the code uses).
    assert not can("update", "deployments.apps", "-n", other)
    assert not can("get", "pods", "-n", other)
    assert not can("create", "events.events.k8s.io", "-n", other)
    assert not can("patch", "events", "-n", other)
    assert not can("get", "celeryworkerpools.celeriac.dev", "-n", other)
    assert not can("list", "secrets", "-n", other)
    assert not can("watch", "secrets", "-A")
    assert not can("delete", "deployments.apps", "-n", other)
    assert not can("delete", "pods", "-n", other)
    assert not can("create", "pods", "-n", other)
    assert not can("delete", "celeryworkerpools.celeriac.dev", "-n", other)
    assert not can("update", "customresourcedefinitions.apiextensions.k8s.io", "-A")
    assert not can("delete", "nodes", "-A")
    assert not can("list", "namespaces", "-A")
    assert not can("create", "clusterrolebindings.rbac.authorization.k8s.io", "-A")
    assert not can("create", "rolebindings.rbac.authorization.k8s.io", "-n", other)
    assert not can("create", "pods/exec", "-n", other)

    # Upgrade to HA: two peered replicas, JSON logs, a budget and the ClusterKopfPeering appear.
    peering = f"peer-{release.name}"
    release.helm_ok(
        "upgrade", release.name, str(CHART), "--wait", "--timeout", "240s",
        "--set", "replicaCount=2", "--set", f"peering.name={peering}",
        "--set", "logging.format=json",
    )  # fmt: skip
    deployment = release.deployment()
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["CELERIAC_LOG_FORMAT"] == "json"
    assert env["CELERIAC_PEERING"] == peering
    assert "CELERIAC_NAMESPACES" not in env
    wait_until(
        "2 ready operator replicas",
        lambda: release.deployment()["status"].get("readyReplicas") == 2,
    )
    pdb = json.loads(
        cluster.kubectl("-n", namespace, "get", "pdb", f"{release.name}-celeriac", "-o", "json")
    )
    assert pdb["spec"]["minAvailable"] == 1
    cluster.kubectl("get", "clusterkopfpeering", peering)
    assert (
        helm.ok(
            "history", release.name, "-n", namespace, "-o", "json", kubeconfig=cluster.kubeconfig
        ).count('"revision"')
        == 2
    )

    release.uninstall_leaves_nothing()


def test_namespaced_install_is_confined_to_the_watched_namespaces(
    cluster: ControlPlane, helm: Helm, namespace: str, extra_namespaces: list[str]
) -> None:
    team_a, team_b, unwatched = extra_namespaces
    release = Release(cluster, helm, f"ns-{uuid.uuid4().hex[:6]}", namespace)
    notes = release.install(
        "--set-json", f'watchNamespaces=["{team_a}","{team_b}"]',
        "--set-json", 'rbac.secretNames=["demo-broker"]',
        "--set", "replicaCount=2", "--set", "peering.name=celeriac",
    )  # fmt: skip
    assert f"handling CeleryWorkerPools in: {team_a}, {team_b}." in notes
    assert f"kubectl get cwp -n {team_a} -w" in notes
    env = {
        e["name"]: e.get("value")
        for e in release.deployment()["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert json.loads(env["CELERIAC_NAMESPACES"]) == [team_a, team_b]
    for ns in (team_a, team_b):
        cluster.kubectl("-n", ns, "get", "kopfpeering", "celeriac")

    can = release.can
    for ns in (team_a, team_b):
        assert can("patch", "deployments.apps", "-n", ns)
        assert can("patch", "celeryworkerpools.celeriac.dev", "--subresource=status", "-n", ns)
        assert can("get", "secrets/demo-broker", "-n", ns)
        assert can("create", "events", "-n", ns)
        assert can("patch", "kopfpeerings.kopf.dev", "-n", ns)
        assert not can("get", "secrets/other-secret", "-n", ns)
        assert not can("list", "secrets", "-n", ns)
    assert can("list", "customresourcedefinitions.apiextensions.k8s.io", "-A")
    # Outside the watched namespaces, nothing.
    assert not can("get", "secrets/demo-broker", "-n", unwatched)
    assert not can("list", "secrets", "-n", unwatched)
    assert not can("patch", "deployments.apps", "-n", unwatched)
    assert not can("list", "pods", "-n", unwatched)
    assert not can("patch", "celeryworkerpools.celeriac.dev", "-n", unwatched)
    assert not can("list", "deployments.apps", "-A")
    # Namespaced kopf checks that its namespaces exist: listing names is all it gets.
    assert can("list", "namespaces", "-A")
    assert not can("delete", "namespaces", "-A")
    assert not can("patch", "clusterkopfpeerings.kopf.dev", "-A")
    assert not can("delete", "nodes", "-A")
    assert not can("create", "clusterrolebindings.rbac.authorization.k8s.io", "-A")

    release.uninstall_leaves_nothing()
