"""Start-up of the real node: control plane, then the node (network, registry with the worker
image pushed, containerd, kubelet Ready, kube-proxy, metrics-server Available), then a pod of
the worker image from creation to Running, then teardown. Run it twice: the first run pulls
nothing from the cache's registry yet (cold), later runs are warm.
Results: bench/results/real-node.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cluster.test_real_node import WORKER, restricted_pod  # noqa: E402

from celeriac_dev.controlplane import ControlPlane  # noqa: E402
from celeriac_dev.realnode import RealNode  # noqa: E402


def pod_running_s(plane: ControlPlane, node: RealNode, name: str) -> float:
    assert node.registry is not None
    image = node.registry.image(WORKER.repository, WORKER.tag)
    manifest = restricted_pod(name, image, [], {})
    manifest["spec"]["containers"][0]["command"] = ["python", "-c", "import time; time.sleep(600)"]
    started = time.monotonic()
    plane.kubectl("apply", "-f", "-", input_text=json.dumps(manifest))
    deadline = started + 300
    while time.monotonic() < deadline:
        out = plane.kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}", check=False)
        if out.strip() == "Running":
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"pod {name} not Running within 300 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="celeriac-bench-node-") as tmp:
        plane = ControlPlane(state_dir=Path(tmp))
        t0 = time.monotonic()
        plane.start()
        t1 = time.monotonic()
        node = RealNode(plane)
        try:
            node.start(images=[WORKER])
            t2 = time.monotonic()
            pods = [pod_running_s(plane, node, f"sleeper-{i}") for i in range(args.pods)]
        finally:
            t3 = time.monotonic()
            node.stop()
            t4 = time.monotonic()
            plane.stop()
    print(f"control plane start  {t1 - t0:6.1f} s")
    print(f"real node start      {t2 - t1:6.1f} s")
    for i, seconds in enumerate(pods):
        print(f"pod {i} to Running     {seconds:6.1f} s")
    print(f"real node teardown   {t4 - t3:6.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
