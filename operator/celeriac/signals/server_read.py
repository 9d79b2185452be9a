"""What one tick sends to one Redis server, and the bounded readings that come back.

Two ways, chosen per server by the reader:

- scripted (the default): one pipeline of LLEN plus one EVALSHA per list, per `unacked`
  hash and per worker report hash (`server_script`): message bodies and oversized or
  surplus reports never leave Redis. One round trip.
- plain, where the server refuses scripts (ACLs on managed Redis): a first pipeline asks
  sizes (LLEN, HLEN, MEMORY USAGE, up to MAX_UNACKED_READ `unacked` tags), a second reads
  the lists' tails and reports that fit the per-tick byte budget, a third and fourth the
  `unacked` entries' sizes (HSTRLEN) and those that fit (HMGET); counts of entries not
  read are extrapolated from those read. A list whose messages do not fit has an oldest
  age of None, a report hash that does not fit an error: unknown, never zero. Two to four
  round trips.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from celeriac.signals import celery_message, kombu_keys, server_script
from celeriac.signals.server_script import UnackedCounts

if TYPE_CHECKING:
    from celeriac.signals.reader import PoolQuery

# A message's envelope without its body (headers, properties) is ~1-2 KB; Celery truncates
# argsrepr/kwargsrepr to 1 KB each. Bigger than this after the body is cut: age unknown.
MAX_MESSAGE_BYTES = 64 * 1024
# Worker reports are ~350 bytes of JSON; a pool has at most 10,000 pods (maxReplicas).
MAX_REPORT_BYTES = 4096
MAX_REPORTS_PER_POOL = 1024
# Entries of an `unacked` hash read per tick, and the bytes Redis may copy reading them.
MAX_UNACKED_READ = 20_000
UNACKED_COPY_BUDGET_BYTES = 256 * 1024 * 1024
# Without scripts: the most a tick may move from one server (MEMORY USAGE estimates and
# HSTRLEN of unacked entries, which are read whole: a body cannot be cut without a script).
PLAIN_TICK_BUDGET_BYTES = 32 * 1024 * 1024
MAX_UNACKED_ENTRY_BYTES = 1024 * 1024
MAX_TAG_BYTES = 256  # kombu's delivery tags are UUIDs
# Lists read per pool per tick (issue #14, 11): the CRD allows 256 queues x priority steps,
# plus each queue's plain list when the steps omit 0.
MAX_LISTS_PER_POOL = 256 + 32

ListSlot = tuple[str, str, int, str]  # pool id, queue, priority step, key


@dataclass
class Readings:
    """Replies of one server for one tick, keyed by what was asked; errors kept in place."""

    lengths: dict[str, int | Exception] = field(default_factory=dict)
    tails: dict[str, list[bytes] | Exception | None] = field(default_factory=dict)
    unacked: dict[str, UnackedCounts | Exception] = field(default_factory=dict)
    reports: dict[str, tuple[int, dict[bytes, bytes]] | Exception] = field(default_factory=dict)
    round_trips: int = 0


def list_slots(queries: list[PoolQuery]) -> list[ListSlot]:
    slots: list[ListSlot] = []
    for q in queries:
        pool_slots = [
            (q.pool_id, queue, step, key)
            for queue in q.queues
            for step, key in kombu_keys.queue_keys(
                queue, q.priority_steps, q.sep, q.global_keyprefix
            )
        ]
        slots.extend(pool_slots[:MAX_LISTS_PER_POOL])
    return slots


def _tail_length(key: str, deep: frozenset[str], oldest_scan: int) -> int:
    return oldest_scan if key in deep else 1


class ScriptRefusedError(Exception):
    """SCRIPT LOAD or EVALSHA was refused: the server gets plain reads from now on."""


class ScriptMissingError(Exception):
    """EVALSHA answered NOSCRIPT (a restarted or flushed server): load it and read again."""


def _check_script_reply(reply: object) -> None:
    if isinstance(reply, redis.exceptions.NoScriptError):
        raise ScriptMissingError
    if isinstance(reply, redis.exceptions.NoPermissionError):  # an ACL without @scripting
        raise ScriptRefusedError(str(reply))
    if isinstance(reply, redis.ResponseError):
        text = str(reply).lower()
        if "unknown command" in text or ("script" in text and "disabled" in text):
            raise ScriptRefusedError(str(reply))


def fetch_scripted(
    client: redis.Redis[bytes],
    queries: list[PoolQuery],
    deep: frozenset[str],
    oldest_scan: int,
    load_script: bool,
) -> Readings:
    slots = list_slots(queries)
    prefixes = sorted({q.global_keyprefix for q in queries})
    sha = server_script.SHA
    pipe = client.pipeline(transaction=False)
    if load_script:
        pipe.script_load(server_script.SCRIPT)
    for _, _, _, key in slots:
        pipe.llen(key)
        pipe.evalsha(sha, 1, key, "tail", _tail_length(key, deep, oldest_scan), MAX_MESSAGE_BYTES)
    for prefix in prefixes:
        pipe.evalsha(
            sha,
            1,
            kombu_keys.unacked_key(prefix),
            "unacked",
            MAX_UNACKED_READ,
            MAX_MESSAGE_BYTES,
            UNACKED_COPY_BUDGET_BYTES,
        )
    for q in queries:
        key = kombu_keys.worker_load_key(q.pool_id, q.global_keyprefix)
        pipe.evalsha(sha, 1, key, "reports", MAX_REPORTS_PER_POOL, MAX_REPORT_BYTES)
    replies = iter(pipe.execute(raise_on_error=False))
    if load_script:
        _check_script_reply(next(replies))
    out = Readings(round_trips=1)
    for _, _, _, key in slots:
        out.lengths[key], tail = next(replies), next(replies)
        _check_script_reply(tail)
        out.tails[key] = tail if isinstance(tail, Exception) else list(tail)
    for prefix in prefixes:
        reply = next(replies)
        _check_script_reply(reply)
        out.unacked[prefix] = (
            reply if isinstance(reply, Exception) else server_script.parse_unacked(reply)
        )
    for q in queries:
        reply = next(replies)
        _check_script_reply(reply)
        out.reports[q.pool_id] = (
            reply if isinstance(reply, Exception) else server_script.parse_reports(reply)
        )
    return out


class _Budget:
    def __init__(self, total: int) -> None:
        self.left = total

    def take(self, estimate: object) -> bool:
        """Spend `estimate` bytes if they fit; an unknown size (None, an error) never fits."""
        if not isinstance(estimate, int) or estimate > self.left:
            return False
        self.left -= estimate
        return True


def _sizes(
    client: redis.Redis[bytes], slots: list[ListSlot], prefixes: list[str], report_keys: list[str]
) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for _, _, _, key in slots:
        pipe.llen(key)
        pipe.memory_usage(key)
    for prefix in prefixes:
        pipe.hlen(kombu_keys.unacked_key(prefix))
        pipe.hrandfield(kombu_keys.unacked_key(prefix), MAX_UNACKED_READ)
    for key in report_keys:
        pipe.hlen(key)
        pipe.memory_usage(key)
    return pipe.execute(raise_on_error=False)


def fetch_plain(
    client: redis.Redis[bytes], queries: list[PoolQuery], deep: frozenset[str], oldest_scan: int
) -> Readings:
    """Sizes first, then only the reads that fit PLAIN_TICK_BUDGET_BYTES."""
    slots = list_slots(queries)
    prefixes = sorted({q.global_keyprefix for q in queries})
    report_keys = [kombu_keys.worker_load_key(q.pool_id, q.global_keyprefix) for q in queries]
    sizes = iter(_sizes(client, slots, prefixes, report_keys))
    budget = _Budget(PLAIN_TICK_BUDGET_BYTES)
    out = Readings(round_trips=2)
    pipe = client.pipeline(transaction=False)
    asked: list[tuple[str, str]] = []  # (kind, name) in pipeline order
    for _, _, _, key in slots:
        length, usage = next(sizes), next(sizes)
        out.lengths[key] = length
        out.tails[key] = None
        n = _tail_length(key, deep, oldest_scan)
        if isinstance(length, int) and length and isinstance(usage, int):
            per_message = usage // length
            if per_message <= MAX_MESSAGE_BYTES and budget.take(per_message * min(n, length)):
                pipe.lrange(key, -n, -1)
                asked.append(("tail", key))
    tags: dict[str, list[bytes]] = {}
    for prefix in prefixes:
        entries, sample = next(sizes), next(sizes)
        if isinstance(entries, Exception) or isinstance(sample, Exception):
            out.unacked[prefix] = entries if isinstance(entries, Exception) else sample
        else:
            out.unacked[prefix] = UnackedCounts(int(entries), 0)
            tags[prefix] = [t for t in (sample or []) if len(t) <= MAX_TAG_BYTES]
    for q, key in zip(queries, report_keys, strict=True):
        fields, usage = next(sizes), next(sizes)
        if isinstance(fields, Exception):
            out.reports[q.pool_id] = fields
        elif fields == 0:
            out.reports[q.pool_id] = (0, {})
        elif isinstance(usage, int) and budget.take(
            min(usage, usage // fields * MAX_REPORTS_PER_POOL)
        ):
            pipe.hrandfield(key, MAX_REPORTS_PER_POOL, withvalues=True)
            asked.append(("reports", q.pool_id))
            out.reports[q.pool_id] = (int(fields), {})
        else:
            out.reports[q.pool_id] = ValueError(
                f"{fields} worker reports too large to read within the per-tick budget"
            )
    _read_asked(pipe, asked, out)
    if any(tags.values()):
        _read_unacked_plain(client, tags, budget, out)
    for prefix, counted in out.unacked.items():
        if isinstance(counted, UnackedCounts) and counted.total and not counted.read:
            # Reading none of them would report zero reserved tasks: unknown instead.
            out.unacked[prefix] = ValueError(
                f"{counted.total} unacked messages, none small enough to read within the "
                "per-tick budget without server-side scripts: allow EVALSHA for the operator"
            )
    return out


def _read_unacked_plain(
    client: redis.Redis[bytes], tags: dict[str, list[bytes]], budget: _Budget, out: Readings
) -> None:
    """Entry sizes first (HSTRLEN), then the entries that fit the budget; counts scale up."""
    sizes: Any = client.pipeline(transaction=False)  # redis-py's hstrlen has no annotations
    for prefix, names in tags.items():
        for tag in names:
            sizes.hstrlen(kombu_keys.unacked_key(prefix), tag)
    lengths = iter(sizes.execute(raise_on_error=False))
    pipe = client.pipeline(transaction=False)
    chosen: dict[str, list[bytes]] = {}
    for prefix, names in tags.items():
        chosen[prefix] = [
            tag
            for tag in names
            if (size := next(lengths)) is not None
            and size <= MAX_UNACKED_ENTRY_BYTES
            and budget.take(size)
        ]
        if chosen[prefix]:
            pipe.hmget(kombu_keys.unacked_key(prefix), chosen[prefix])
    replies = iter(pipe.execute(raise_on_error=False))
    out.round_trips += 2
    for prefix, names in chosen.items():
        if not names:
            continue
        reply = next(replies)
        counted = out.unacked[prefix]
        if isinstance(reply, Exception) or isinstance(counted, Exception):
            out.unacked[prefix] = reply if isinstance(reply, Exception) else counted
            continue
        values = _count_plain([v for v in reply if v is not None])
        out.unacked[prefix] = UnackedCounts(counted.total, values.read, values.by_key_eta)


def _read_asked(pipe: Any, asked: list[tuple[str, str]], out: Readings) -> None:
    if not asked:
        return
    for (kind, name), reply in zip(asked, pipe.execute(raise_on_error=False), strict=True):
        if kind == "tail":
            out.tails[name] = reply if isinstance(reply, Exception) else list(reply)
        elif kind == "unacked":
            out.unacked[name] = reply if isinstance(reply, Exception) else _count_plain(reply)
        elif isinstance(reply, Exception):
            out.reports[name] = reply
        else:
            values = {
                f: v
                for f, v in zip(reply[::2], reply[1::2], strict=True)
                if len(v) <= MAX_REPORT_BYTES
            }
            total = out.reports[name]
            out.reports[name] = (total[0] if isinstance(total, tuple) else len(values), values)


def _count_plain(values: list[bytes]) -> UnackedCounts:
    """The script's counts from whole `unacked` values (the plain path)."""
    counts: dict[tuple[str, str], int] = {}
    for raw in values:
        key = celery_message.unacked_key_eta(raw)
        counts[key] = counts.get(key, 0) + 1
    return UnackedCounts(len(values), len(values), counts)
