"""When the operator first saw each list's oldest message: the task age of stock apps.

Celery's protocol carries no publish time (the library adds a header for that), so for a
message without one the age is counted from the first tick that saw it at the old end of
its list. That is a lower bound: the message may have waited behind others, or arrived up
to one tick before it was seen. It is labelled as such wherever it is shown.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable


class HeadSightings:
    """(server, list key) -> (task id at the old end, when first seen there)."""

    def __init__(self) -> None:
        self._seen: dict[Hashable, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def age_s(self, where: Hashable, task_id: str, now: float) -> float:
        with self._lock:
            seen = self._seen.get(where)
            if seen is None or seen[0] != task_id:
                self._seen[where] = (task_id, now)
                return 0.0
            return max(0.0, now - seen[1])

    def forget(self, where: Hashable) -> None:
        """The list is empty (or its old end not due): the next head is new."""
        with self._lock:
            self._seen.pop(where, None)
