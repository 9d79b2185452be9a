"""What a pool's `template.podTemplate` may set: the fields a worker pod needs, and no more.

Creating a pool creates a Deployment, so its author could otherwise ask for what the
`restricted` Pod Security profile forbids (issue #14, 2): host namespaces, privileged or
capability-adding containers, hostPath volumes, host ports, a pinned node. None of those
has a field here, and the structural schema generated from these models makes the
apiserver prune or refuse them; the chart's admission policy refuses them by name with a
reason, for apiservers that only prune. Whatever is set here, the renderer applies the
restricted security context last (`actuators.render`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from celeriac.api.base import Model

PRESERVE = {"x-kubernetes-preserve-unknown-fields": True}
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


# Objects that cannot widen what a pod may do (probes, affinity, a volume source that is
# not a host path) stay open: copying the Kubernetes API's shapes would only drift.
OpenObject = Annotated[dict[str, Any], Field(json_schema_extra=PRESERVE)]
OpenList = Annotated[
    list[dict[str, Any]], Field(max_length=64, json_schema_extra={"items": PRESERVE})
]
Name = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]


class EnvVar(Model):
    name: Annotated[str, Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", max_length=256)]
    value: Annotated[str | None, Field(max_length=32768)] = None
    value_from: Annotated[dict[str, Any] | None, Field(json_schema_extra=PRESERVE)] = None


class ObjectMeta(Model):
    labels: Annotated[dict[str, str] | None, Field(max_length=64)] = None
    annotations: Annotated[dict[str, str] | None, Field(max_length=64)] = None


class VolumeMount(Model):
    name: Name
    mount_path: Annotated[str, Field(min_length=1, max_length=4096)]
    sub_path: Annotated[str | None, Field(max_length=4096)] = None
    read_only: bool | None = None
    # Bidirectional propagation needs a privileged container.
    mount_propagation: Literal["None", "HostToContainer"] | None = None


class ContainerPort(Model):
    """No hostPort, no hostIP: the restricted profile's baseline forbids them."""

    container_port: Annotated[int, Field(ge=1, le=65535)]
    name: Annotated[str | None, Field(max_length=15)] = None
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None


class ContainerSecurity(Model):
    """What a container may add to the restricted context: a non-root identity, a read-only root."""

    run_as_user: Annotated[int | None, Field(ge=1, le=2**31 - 1)] = None
    run_as_group: Annotated[int | None, Field(ge=0, le=2**31 - 1)] = None
    read_only_root_filesystem: bool | None = None


class Container(Model):
    """An override of the worker container (name `worker`), or a sidecar."""

    name: Name
    image: Annotated[str | None, Field(max_length=1024)] = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    command: Annotated[
        list[Annotated[str, Field(max_length=4096)]] | None, Field(max_length=64)
    ] = None
    args: Annotated[list[Annotated[str, Field(max_length=4096)]] | None, Field(max_length=256)] = (
        None
    )
    working_dir: Annotated[str | None, Field(max_length=4096)] = None
    env: Annotated[list[EnvVar] | None, Field(max_length=256)] = None
    env_from: OpenList | None = None
    resources: OpenObject | None = None
    volume_mounts: Annotated[list[VolumeMount] | None, Field(max_length=64)] = None
    ports: Annotated[list[ContainerPort] | None, Field(max_length=64)] = None
    liveness_probe: OpenObject | None = None
    readiness_probe: OpenObject | None = None
    startup_probe: OpenObject | None = None
    lifecycle: OpenObject | None = None
    security_context: ContainerSecurity | None = None


class Volume(Model):
    """Volume sources that stay inside the pod's namespace: no hostPath, no node devices."""

    name: Name
    empty_dir: OpenObject | None = None
    config_map: OpenObject | None = None
    secret: OpenObject | None = None
    persistent_volume_claim: OpenObject | None = None
    projected: OpenObject | None = None
    downward_api: Annotated[OpenObject | None, Field(alias="downwardAPI")] = None
    ephemeral: OpenObject | None = None


class PodSecurity(Model):
    run_as_user: Annotated[int | None, Field(ge=1, le=2**31 - 1)] = None
    run_as_group: Annotated[int | None, Field(ge=0, le=2**31 - 1)] = None
    fs_group: Annotated[int | None, Field(ge=0, le=2**31 - 1)] = None
    supplemental_groups: Annotated[
        list[Annotated[int, Field(ge=0, le=2**31 - 1)]] | None, Field(max_length=32)
    ] = None
    fs_group_change_policy: Literal["OnRootMismatch", "Always"] | None = None


class LocalObjectReference(Model):
    name: Annotated[str, Field(min_length=1, max_length=253)]


class PodSpec(Model):
    """No hostNetwork/hostPID/hostIPC, nodeName, serviceAccountName or runtimeClassName."""

    containers: Annotated[list[Container] | None, Field(max_length=16)] = None
    init_containers: Annotated[list[Container] | None, Field(max_length=16)] = None
    volumes: Annotated[list[Volume] | None, Field(max_length=64)] = None
    affinity: OpenObject | None = None
    tolerations: OpenList | None = None
    node_selector: Annotated[dict[str, str] | None, Field(max_length=64)] = None
    topology_spread_constraints: OpenList | None = None
    priority_class_name: Annotated[str | None, Field(max_length=253)] = None
    image_pull_secrets: Annotated[list[LocalObjectReference] | None, Field(max_length=16)] = None
    dns_policy: Literal["ClusterFirst", "Default", "None"] | None = None
    dns_config: OpenObject | None = None
    security_context: PodSecurity | None = None
    automount_service_account_token: bool | None = None
    enable_service_links: bool | None = None


class PodTemplate(Model):
    metadata: ObjectMeta | None = None
    spec: PodSpec | None = None
