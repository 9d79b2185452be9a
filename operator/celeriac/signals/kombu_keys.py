"""kombu's Redis transport conventions, in one place (kombu/transport/redis.py, 5.x).

- A queue is a list: publish is LPUSH, consume is BRPOP, so the oldest message is at
  index -1.
- Priorities live in extra lists `<queue><sep><step>` for each non-zero step of
  `priority_steps` (default [0, 3, 6, 9]); step 0 is the plain key. On Redis, 0 is the
  highest priority.
- A delivered, not yet acked message sits in the hash `unacked` (field = delivery tag,
  value = JSON [payload, exchange, routing_key]) and the sorted set `unacked_index`.
  One hash per database serves every queue.
- `global_keyprefix` is prepended to every key.
- kombu lets `unacked_key` / `unacked_index_key` be renamed in transport options; celeriac
  assumes the defaults (the pool spec has no field for them).
"""

from __future__ import annotations

from celeriac.signals.model import WORKER_LOAD_KEY

DEFAULT_SEP = "\x06\x16"
DEFAULT_PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
# Header the reference worker image adds at publish time (before_task_publish).
PUBLISHED_AT_HEADER = "celeriac_published_at"


def queue_keys(
    queue: str,
    priority_steps: tuple[int, ...] = DEFAULT_PRIORITY_STEPS,
    sep: str = DEFAULT_SEP,
    prefix: str = "",
) -> list[tuple[int, str]]:
    """(priority step, Redis key) for every list that can hold `queue`'s messages."""
    keys = []
    for step in sorted(set(priority_steps) | {0}):
        name = queue if step == 0 else f"{queue}{sep}{step}"
        keys.append((step, f"{prefix}{name}"))
    return keys


def unacked_key(prefix: str = "") -> str:
    return f"{prefix}{UNACKED}"


def worker_load_key(pool_id: str, prefix: str = "") -> str:
    # Not kombu's, but prefixed the same way: pools sharing a Redis through global_keyprefix
    # stay apart (the worker image writes it under its transport's prefix).
    return prefix + WORKER_LOAD_KEY.format(pool_id=pool_id)
