"""`make bench`: every benchmark in bench/, one after another, each with its own defaults.

Each script prints its table and writes bench/results/<name>.md itself; this runner only
starts them in order and says which failed. Some need the local control plane (`make setup`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    return sorted([*BENCH.glob("bench_*.py"), BENCH / "run_policies.py"])


def main() -> int:
    failed: list[str] = []
    for script in scripts():
        started = time.monotonic()
        print(f"== {script.name}", flush=True)
        code = subprocess.run([sys.executable, str(script)], check=False).returncode
        print(f"== {script.name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
