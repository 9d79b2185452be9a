"""Invariants of the policy over arbitrary signals and memories (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from celeriac.api.pool import Concurrency, Scaling
from celeriac.policy import decide
from celeriac.policy.model import (
    ArrivalSample,
    Mode,
    PolicyInput,
    PolicyMemory,
    Recommendation,
    ScaleEvent,
)
from celeriac.signals.model import PoolSignals, QueueBacklog, WorkerLoad

NOW = 2_000_000.0


@st.composite
def inputs(draw: st.DrawFn, stale: bool | None = None) -> PolicyInput:
    lo = draw(st.integers(0, 5))
    hi = draw(st.integers(max(lo, 1), 30))
    cmin = draw(st.integers(0, 4))
    cmax = draw(st.integers(max(cmin, 1), 16))
    is_stale = draw(st.booleans()) if stale is None else stale
    workers = draw(
        st.lists(
            st.builds(
                WorkerLoad,
                hostname=st.text("abc", min_size=1, max_size=4),
                running=st.integers(0, 16),
                pool_size=st.integers(0, 16),
                range_min=st.integers(0, 4),
                range_max=st.integers(1, 16),
                cpu_percent=st.one_of(st.none(), st.floats(0, 400)),
                processed_total=st.integers(0, 10_000),
                mean_task_seconds=st.one_of(st.none(), st.floats(0.001, 600)),
                ts=st.just(NOW),
            ),
            max_size=6,
        )
    )
    queues = (
        None
        if is_stale and draw(st.booleans())
        else [
            QueueBacklog(
                queue="q",
                waiting=draw(st.integers(0, 100_000)),
                reserved=draw(st.integers(0, 1000)),
                oldest_age_s=draw(st.one_of(st.none(), st.floats(0, 10_000))),
            )
        ]
    )
    observed = NOW - (
        draw(st.floats(31, 10_000)) if is_stale and queues is not None else draw(st.floats(0, 5))
    )
    memory = PolicyMemory(
        recommendations=[
            Recommendation(t=NOW - draw(st.floats(0, 3000)), replicas=draw(st.integers(0, 40)))
            for _ in range(draw(st.integers(0, 5)))
        ],
        last_busy_at=draw(st.one_of(st.none(), st.floats(NOW - 5000, NOW))),
        panic_until=draw(st.one_of(st.none(), st.floats(NOW - 100, NOW + 100))),
        scale_events=[
            ScaleEvent(
                t=NOW - draw(st.floats(0.5, 120)),
                from_replicas=draw(st.integers(0, 40)),
                to_replicas=draw(st.integers(0, 40)),
            )
            for _ in range(draw(st.integers(0, 3)))
        ],
        arrivals=[
            ArrivalSample(
                t=NOW - draw(st.floats(0.5, 90)),
                arrivals=draw(st.floats(0, 10_000)),
                dt=draw(st.floats(0.5, 10)),
            )
            for _ in range(draw(st.integers(0, 8)))
        ],
        last_backlog=draw(st.one_of(st.none(), st.integers(0, 100_000))),
        last_t=draw(st.one_of(st.none(), st.floats(NOW - 30, NOW - 0.5))),
        startup_s=draw(st.one_of(st.none(), st.floats(0.5, 600))),
        service_s=draw(st.one_of(st.none(), st.floats(0.001, 600))),
    )
    return PolicyInput(
        now=NOW,
        scaling=Scaling(min_replicas=lo, max_replicas=hi, stale_after_seconds=30),
        concurrency=Concurrency(min=cmin, max=cmax),
        signals=PoolSignals(
            observed_at=observed,
            queues=queues,
            workers=workers or None,
            backlog_error=None if queues is not None else "down",
        ),
        current_replicas=draw(st.integers(0, 40)),
        ready_replicas=draw(st.integers(0, 40)),
        memory=memory,
    )


@settings(max_examples=300, deadline=None)
@given(inputs())
def test_desired_is_within_min_and_max_or_held(inp: PolicyInput) -> None:
    d = decide(inp)
    lo, hi = inp.scaling.min_replicas, inp.scaling.max_replicas
    assert lo <= d.desired_replicas <= hi


@settings(max_examples=300, deadline=None)
@given(inputs(stale=True))
def test_stale_signals_never_scale_in(inp: PolicyInput) -> None:
    d = decide(inp)
    assert d.mode == Mode.HOLD
    assert d.desired_replicas >= min(inp.current_replicas, inp.scaling.max_replicas)


@settings(max_examples=300, deadline=None)
@given(inputs())
def test_range_stays_within_the_concurrency_bounds(inp: PolicyInput) -> None:
    d = decide(inp)
    assert inp.concurrency.min <= d.range_min <= d.range_max <= inp.concurrency.max


@settings(max_examples=300, deadline=None)
@given(inputs(stale=False))
def test_scale_down_sheds_at_most_half_per_30_s_counting_recent_scale_downs(
    inp: PolicyInput,
) -> None:
    d = decide(inp)
    current = inp.current_replicas
    # The default policy is -50 % per 30 s, measured from the size 30 s ago (HPA semantics).
    shed = sum(
        e.from_replicas - e.to_replicas
        for e in inp.memory.scale_events
        if inp.now - e.t < 30 and e.to_replicas < e.from_replicas
    )
    # Only maxReplicas and minReplicas override it (a lowered max applies at once).
    if inp.scaling.min_replicas < d.desired_replicas < current <= inp.scaling.max_replicas:
        assert d.desired_replicas >= min(current, (current + shed) // 2)


@settings(max_examples=300, deadline=None)
@given(inputs(stale=False))
def test_no_scale_down_while_panicking_with_work_waiting(inp: PolicyInput) -> None:
    d = decide(inp)
    if d.mode == Mode.PANIC:
        assert d.desired_replicas >= min(inp.current_replicas, inp.scaling.max_replicas)


@settings(max_examples=200, deadline=None)
@given(inputs())
def test_the_same_input_gives_the_same_decision(inp: PolicyInput) -> None:
    assert decide(inp) == decide(inp)


@settings(max_examples=200, deadline=None)
@given(inputs(stale=False))
def test_work_waiting_on_a_running_pool_never_scales_it_to_zero(inp: PolicyInput) -> None:
    d = decide(inp)
    if inp.current_replicas > 0 and (inp.signals.backlog or 0) > 0 and inp.scaling.max_replicas > 0:
        assert d.desired_replicas >= 1
