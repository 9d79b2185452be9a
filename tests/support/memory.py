"""Peak resident memory of this process across a block (Linux: VmHWM, reset via clear_refs)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


@contextmanager
def peak_rss_growth_mb() -> Iterator[list[float]]:
    """Yields a list that holds, after the block, how far the peak RSS rose above the start."""
    # "5" resets the peak to the current RSS (Documentation/filesystems/proc.rst).
    Path("/proc/self/clear_refs").write_text("5")
    start = _status_kib("VmRSS")
    out: list[float] = []
    yield out
    out.append((_status_kib("VmHWM") - start) / 1024)
