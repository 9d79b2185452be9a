"""`celeriac run`: the operator process."""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys

from celeriac.controller.settings import OperatorSettings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def configure_logging(settings: OperatorSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)


def run_operator(settings: OperatorSettings) -> int:
    import kopf
    from prometheus_client import start_http_server

    import celeriac.controller.handlers  # noqa: F401 - registers the handlers with kopf

    configure_logging(settings)
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    priority = settings.peering_priority
    if priority is None:
        # Replicas sharing a priority all pause (kopf's conflict rule): make them differ.
        priority = secrets.randbelow(1_000_000) + 1
    kopf.run(
        standalone=settings.peering is None,
        peering_name=settings.peering,
        priority=priority,
        namespaces=settings.namespaces,
        clusterwide=not settings.namespaces,
        liveness_endpoint=(
            f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
        ),
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    settings = OperatorSettings()
    if args.namespace:
        settings = settings.model_copy(update={"namespaces": args.namespace})
    return run_operator(settings)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run", help="run the operator (settings from CELERIAC_* env vars)"
    )
    parser.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    parser.set_defaults(func=_run)
