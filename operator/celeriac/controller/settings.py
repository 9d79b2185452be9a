"""Operator settings, from CELERIAC_* environment variables (the Helm chart sets them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CELERIAC_", extra="ignore")

    namespaces: list[str] = Field(
        default_factory=list,
        description="Watch only these namespaces (JSON list); empty means the whole cluster.",
    )
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="0 disables /metrics.")
    health_port: int = Field(
        default=8080, ge=0, le=65535, description="kopf liveness endpoint; 0 disables."
    )
    log_format: Literal["plain", "json"] = "plain"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    peering: str | None = Field(
        default=None, description="kopf peering name for HA; unset runs standalone."
    )
    peering_priority: int | None = Field(
        default=None,
        ge=0,
        description="kopf peering priority; unset picks a random one, because kopf pauses every "
        "replica when two share a priority.",
    )
    peering_lifetime_s: int = Field(
        default=60,
        ge=5,
        le=3600,
        description="How long a silent peer counts as alive (failover time).",
    )
    batch_window_s: float = Field(
        default=0.05,
        ge=0,
        le=5,
        description="How long reads of due pools are gathered into one batch.",
    )
    pod_metrics: bool = Field(
        default=True, description="Also read pod CPU from metrics.k8s.io (metrics-server)."
    )
    wakeup: bool = Field(
        default=True, description="React to new work within a second (Redis keyspace events)."
    )
    configure_broker_events: bool = Field(
        default=False,
        description="Turn on Redis keyspace notifications (CONFIG SET notify-keyspace-events"
        " Kl) on brokers that lack them. Off by default: a shared broker's configuration is"
        " its owner's; without them, pools react on their polling interval.",
    )
    min_reconcile_interval_s: float = Field(
        default=1.0,
        ge=0.1,
        le=60,
        description="Cap on how often one pool is reconciled on wake-ups.",
    )
    io_threads: int = Field(
        default=32,
        ge=4,
        le=256,
        description="Threads for blocking I/O (Kubernetes writes, Secret reads, the signal "
        "read); also the Kubernetes client's connection pool size, so no write waits for a "
        "connection or opens a new one.",
    )
    kubeconfig: str | None = None
