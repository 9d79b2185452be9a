"""What the demo recorded, summed up: celeriac's run against KEDA's on the same burst.

The celeriac line is measured (the pool's Deployment watched while the burst ran). The
KEDA line is the project's simulator running KEDA's Redis list scaler with its defaults
(`listLength` 5, 30 s polling, the HPA's 15 s sync and 300 s scale-down window) on the
arrivals the demo recorded, with the service time and pod start-up the operator measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from celeriac.sim.baselines import KedaPolicy
from celeriac.sim.engine import SimConfig, simulate
from celeriac.sim.metrics import TimelinePoint
from celeriac.sim.trace import Task

KEDA_TAIL_S = 900.0


@dataclass(frozen=True)
class Sample:
    """The pool as `kubectl get cwp` showed it, `t` seconds after the burst began."""

    t: float
    backlog: int | None
    desired: int | None
    ready: int | None
    pods: int
    pod_range: str | None
    reason: str | None


@dataclass(frozen=True)
class ReplicaChange:
    """The worker Deployment as its watch delivered it: spec and ready replicas."""

    t: float
    spec: int
    ready: int


@dataclass
class Recording:
    arrivals_s: list[float] = field(default_factory=list)  # relative to the burst's start
    samples: list[Sample] = field(default_factory=list)
    changes: list[ReplicaChange] = field(default_factory=list)
    service_s: float | None = None  # mean task duration the operator learned
    startup_s: float | None = None  # pod start-up the operator learned


@dataclass(frozen=True)
class Outcome:
    """One policy's handling of the burst, in the numbers the summary prints."""

    name: str
    peak_pods: int
    drained_after_s: float | None
    pod_seconds: float  # from the burst until both are back at their idle size
    settled_after_s: float | None = None  # back at the size it had before the burst


@dataclass(frozen=True)
class Reaction:
    patched_after_s: float | None  # burst -> Deployment's replicas raised
    ready_after_s: float | None  # burst -> the added pods ready


def reaction(changes: list[ReplicaChange]) -> Reaction:
    before = [c for c in changes if c.t < 0]
    base_spec = before[-1].spec if before else (changes[0].spec if changes else 0)
    raised = next((c for c in changes if c.t >= 0 and c.spec > base_spec), None)
    if raised is None:
        return Reaction(None, None)
    ready = next((c for c in changes if c.t >= raised.t and c.ready >= raised.spec), None)
    return Reaction(raised.t, ready.t if ready else None)


def _step_integral(points: list[tuple[float, int]], end_s: float) -> float:
    """Area under a step function given as (t, value) points, from 0 to end_s."""
    total = 0.0
    for (t, value), (t_next, _) in zip(points, [*points[1:], (end_s, 0)], strict=True):
        lo, hi = max(0.0, t), min(end_s, t_next)
        if hi > lo:
            total += value * (hi - lo)
    return total


def _settled(steps: list[tuple[float, int]], idle: int) -> float | None:
    """When a step function that rose above `idle` came back down to it for good."""
    peak = max((t for t, v in steps if v > idle), default=None)
    if peak is None:
        return None
    return next((t for t, v in steps if t > peak and v <= idle), None)


def measured_outcome(recording: Recording, horizon_s: float | None = None) -> Outcome:
    """celeriac as the demo saw it; past the end of the run (if a longer horizon is asked
    for) the pool stays at the size it ended with."""
    samples = [s for s in recording.samples if s.t >= 0]
    end = samples[-1].t if samples else 0.0
    # Drained: empty again after the backlog showed up (the status may lag the burst).
    rose = next((i for i, s in enumerate(samples) if (s.backlog or 0) > 0), None)
    drained = None if rose is None else next((s.t for s in samples[rose:] if s.backlog == 0), None)
    pods = [(s.t, s.pods) for s in samples]
    idle = recording.samples[0].pods if recording.samples else 1
    return Outcome(
        name="celeriac (measured)",
        peak_pods=max((s.pods for s in samples), default=0),
        drained_after_s=drained,
        pod_seconds=_step_integral(pods, max(end, horizon_s or 0.0)),
        settled_after_s=_settled(pods, idle),
    )


@dataclass(frozen=True)
class KedaRun:
    outcome: Outcome
    timeline: list[TimelinePoint]
    horizon_s: float  # pod-seconds counted up to here, for both lines


def keda_outcome(
    recording: Recording, concurrency: int, max_replicas: int, end_s: float
) -> KedaRun | None:
    """KEDA with its defaults on the recorded arrivals, or None if nothing was learned."""
    if not recording.arrivals_s or not recording.service_s:
        return None
    tasks = [Task(enqueue_s=t, service_s=recording.service_s) for t in sorted(recording.arrivals_s)]
    config = SimConfig(
        concurrency=concurrency,
        pod_startup_s=recording.startup_s or 20.0,
        max_replicas=max_replicas,
        # Long enough for KEDA's 300 s cooldown to end after the last task: its tail is
        # part of what it costs.
        drain_tail_s=KEDA_TAIL_S,
    )
    result = simulate(tasks, KedaPolicy(concurrency), config)
    finished = [
        t.enqueue_s + w + t.service_s
        for t, w in zip(tasks, result.waits, strict=True)
        if not math.isinf(w)
    ]
    drained = max(finished) if len(finished) == len(tasks) else None
    steps = [(p.t, p.replicas) for p in result.timeline]
    settled = _settled(steps, 1)
    # Until both are back at one pod: KEDA's 300 s scale-down window is part of its cost.
    window = max(end_s, drained or 0.0, settled or 0.0)
    return KedaRun(
        Outcome(
            name="KEDA defaults (simulated)",
            peak_pods=max((r for t, r in steps if t <= window), default=0),
            drained_after_s=drained,
            pod_seconds=_step_integral(steps, window),
            settled_after_s=settled,
        ),
        result.timeline,
        window,
    )


def summary_lines(recording: Recording, outcomes: list[Outcome], tasks: int) -> list[str]:
    react = reaction(recording.changes)
    lines = [
        f"tasks sent: {tasks}",
        "burst -> Deployment patched: "
        + (f"{react.patched_after_s:.2f} s" if react.patched_after_s is not None else "never")
        + "; -> the new pods ready: "
        + (
            f"{react.ready_after_s:.1f} s"
            if react.ready_after_s is not None
            else "not within the run"
        ),
    ]
    if recording.service_s is not None:
        lines.append(
            f"learned by the operator: {recording.service_s:.2f} s per task, "
            f"pod start-up {recording.startup_s or 0:.1f} s"
        )
    width = max(len(o.name) for o in outcomes)
    for o in outcomes:
        drained = f"{o.drained_after_s:.0f} s" if o.drained_after_s is not None else "not drained"
        settled = (
            f"back to 1 pod after {o.settled_after_s:.0f} s"
            if o.settled_after_s is not None
            else "not back to 1 pod"
        )
        lines.append(
            f"{o.name.ljust(width)}  peak {o.peak_pods} pods, drained after {drained}, "
            f"{settled}, {o.pod_seconds:.0f} pod-seconds"
        )
    return lines


def plot(recording: Recording, keda: KedaRun | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = recording.samples
    t = [s.t for s in samples]
    fig, ax1 = plt.subplots(figsize=(9.5, 5.2))
    ax1.fill_between(t, [s.backlog or 0 for s in samples], color="tab:red", alpha=0.18, step="post")
    ax1.step(
        t, [s.backlog or 0 for s in samples], where="post", color="tab:red", label="backlog (tasks)"
    )
    ax1.set_xlabel("seconds since the burst began")
    ax1.set_ylabel("backlog (tasks)", color="tab:red")
    ax1.axvline(0, color="grey", linewidth=0.8, linestyle=":")
    ax2 = ax1.twinx()
    changes = recording.changes
    if changes:
        ct = [c.t for c in changes] + [t[-1] if t else changes[-1].t]
        ax2.step(
            ct,
            [c.spec for c in changes] + [changes[-1].spec],
            where="post",
            color="tab:blue",
            linewidth=2,
            label="celeriac: desired replicas",
        )
        ax2.step(
            ct,
            [c.ready for c in changes] + [changes[-1].ready],
            where="post",
            color="tab:green",
            linewidth=1.5,
            label="celeriac: ready replicas",
        )
    if keda is not None:
        end = t[-1] if t else 0.0
        shown = [p for p in keda.timeline if p.t <= end]
        kt = [p.t for p in shown] + [end]
        kr = [p.replicas for p in shown] + [shown[-1].replicas if shown else 0]
        ax2.step(
            kt,
            kr,
            where="post",
            color="tab:orange",
            linestyle="--",
            linewidth=1.8,
            label="KEDA defaults, same burst (simulated): replicas",
        )
    ax2.set_ylabel("worker pods")
    keda_replicas = [p.replicas for p in keda.timeline] if keda else []
    top = max([1, *(c.spec for c in changes), *keda_replicas])
    ax2.set_ylim(0, top + 1)
    ax1.set_title("celeriac demo: one burst of tasks, backlog and worker pods")
    # Below the axes, so it covers no data and no axis label.
    handles = ax1.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax1.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
