"""What the policy learns across ticks: arrival rates, task duration and pod start-up time.

Workers report how many tasks they finished and how long tasks take; the broker reports the
backlog. Arrivals in a tick are backlog growth plus completions. Two rates come out of them:
a steady one for keep-up capacity (the median of 10 s buckets over a minute, so one dump of
tasks is backlog to drain, not a rate to provision for) and a short one over the panic window
(to see a burst within seconds).
"""

from __future__ import annotations

import math
import statistics

from celeriac.policy.model import ArrivalSample, PolicyInput, PolicyMemory, ScaleEvent

DEFAULT_SERVICE_S = 1.0  # until workers report their task durations
DEFAULT_STARTUP_S = 30.0  # until the policy has seen a pod it asked for become ready
SERVICE_TAU_S = 60.0
STARTUP_WEIGHT = 0.3
RATE_WINDOW_S = 60.0
RATE_BUCKET_S = 10.0
LITTLE_MIN_COMPLETIONS = 20


def _decay(previous: float | None, sample: float, dt: float, tau: float) -> float:
    if previous is None:
        return sample
    return previous + (1.0 - math.exp(-max(dt, 0.0) / tau)) * (sample - previous)


def steady_rate(samples: list[ArrivalSample], now: float) -> float:
    buckets: dict[int, list[float]] = {}
    for s in samples:
        if now - s.t < RATE_WINDOW_S:
            bucket = buckets.setdefault(int((now - s.t) // RATE_BUCKET_S), [0.0, 0.0])
            bucket[0] += s.arrivals
            bucket[1] += s.dt
    rates = [a / dt for a, dt in buckets.values() if dt > 0]
    return statistics.median(rates) if rates else 0.0


def short_rate(samples: list[ArrivalSample], now: float, window_s: float) -> float:
    recent = [s for s in samples if now - s.t < window_s] or samples[-1:]
    dt = sum(s.dt for s in recent)
    return sum(s.arrivals for s in recent) / dt if dt > 0 else 0.0


def _startup_samples(
    events: list[ScaleEvent], last_ready: int, ready: int, now: float
) -> list[float]:
    """How long the pods that just became ready took: from the scale-up that asked for each."""
    waited = []
    for k in range(last_ready + 1, ready + 1):
        asked = [e for e in events if e.from_replicas < k <= e.to_replicas]
        if asked:
            waited.append(now - asked[-1].t)
    return waited


def _reported_service(previous: float | None, inp: PolicyInput, dt: float) -> float | None:
    """The workers' own mean task durations, weighted by pool size, smoothed."""
    workers = inp.signals.workers or []
    durations = [(w.mean_task_seconds, max(w.pool_size, 1)) for w in workers if w.mean_task_seconds]
    if not durations:
        return previous
    weight = sum(n for _, n in durations)
    sample = sum(d * n for d, n in durations if d is not None) / weight
    return _decay(previous, sample, dt, SERVICE_TAU_S)


def little_service(samples: list[ArrivalSample]) -> float | None:
    """Mean task duration by Little's law on the workers: busy processes over completions per
    second, in the rate window. A worker's own mean sees a task only when it ends, so while
    minutes-long tasks run it reports the short ones; here a long task counts from the tick it
    starts. None until enough tasks completed for the ratio to mean something."""
    done = sum(s.completed for s in samples)
    if done < LITTLE_MIN_COMPLETIONS:
        return None
    return sum(s.running * s.dt for s in samples) / done


def measure(inp: PolicyInput) -> PolicyMemory:
    """Fold this tick's readings into the memory."""
    mem, sig, now = inp.memory, inp.signals, inp.now
    backlog = sig.backlog or 0
    workers = sig.workers or []
    completed = sum(w.processed_total for w in workers) if workers else None
    dt = now - mem.last_t if mem.last_t is not None else 0.0

    reported = _reported_service(mem.service_s, inp, dt)
    samples = [s for s in mem.arrivals if now - s.t < RATE_WINDOW_S]
    if dt > 0 and mem.last_backlog is not None:
        done = 0
        if completed is not None and mem.last_completed_total is not None:
            # A restarted or removed worker resets its counter: count no negative completions.
            done = max(0, completed - mem.last_completed_total)
        arrivals = max(0.0, float(backlog - mem.last_backlog + done))
        running = float(sum(w.running for w in workers))
        samples.append(
            ArrivalSample(t=now, arrivals=arrivals, dt=dt, completed=done, running=running)
        )
    little = little_service(samples)
    service = little if little is not None else reported

    startup = mem.startup_s
    if mem.last_ready is not None and inp.ready_replicas > mem.last_ready:
        for waited in _startup_samples(mem.scale_events, mem.last_ready, inp.ready_replicas, now):
            startup = waited if startup is None else startup + STARTUP_WEIGHT * (waited - startup)

    busy = backlog > 0 or any(w.running for w in workers)
    return mem.model_copy(
        update={
            "arrivals": samples,
            "arrival_rate_per_s": steady_rate(samples, now),
            "service_s": service,
            "startup_s": startup,
            "last_ready": inp.ready_replicas,
            "last_completed_total": completed,
            "last_backlog": backlog,
            "last_t": now,
            "last_busy_at": now if busy else mem.last_busy_at,
        }
    )
