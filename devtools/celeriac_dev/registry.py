"""A local OCI registry for the real node: `crane registry serve` on loopback, with its blobs
on disk in the cache so a warm start pushes nothing it already holds.

Images get in two ways: the project's images from the local builder's storage (buildah,
podman or docker, whichever `make images` used), and the pod sandbox's pause image, made
here from the pause binary hack/build-node.sh builds (registry.k8s.io is not reachable).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

PAUSE_REPOSITORY = "celeriac/pause"
PAUSE_TAG = "3.10"


class RegistryError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalRegistry:
    crane: Path
    port: int

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def image(self, repository: str, tag: str) -> str:
        return f"{self.host}/{repository}:{tag}"

    @property
    def pause_image(self) -> str:
        return self.image(PAUSE_REPOSITORY, PAUSE_TAG)

    def serve_argv(self, disk: Path) -> list[str]:
        return [str(self.crane), "registry", "serve", "--address", self.host, "--disk", str(disk)]

    def _crane(self, *args: str) -> str:
        result = subprocess.run(
            [str(self.crane), *args, "--insecure"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise RegistryError(f"crane {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout.strip()

    def holds(self, image: str) -> bool:
        try:
            self._crane("digest", image)
        except RegistryError:
            return False
        return True

    def push_pause(self, pause_binary: Path, work_dir: Path) -> str:
        """A one-layer image holding /pause as its entrypoint."""
        if self.holds(self.pause_image):
            return self.pause_image
        layer = work_dir / "pause-layer.tar"
        with tarfile.open(layer, "w") as tar:
            info = tarfile.TarInfo("pause")
            data = pause_binary.read_bytes()
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
        self._crane("append", "--new_layer", str(layer), "--new_tag", self.pause_image)
        self._crane("mutate", self.pause_image, "--entrypoint", "/pause")
        return self.pause_image

    def push_local(self, local_name: str, repository: str, tag: str) -> str:
        """Copies an image from the local builder's storage (what `make images` built)."""
        target = self.image(repository, tag)
        for builder, argv in (
            ("buildah", ["buildah", "push", "--quiet", "--tls-verify=false"]),
            ("podman", ["podman", "push", "--quiet", "--tls-verify=false"]),
        ):
            if shutil.which(builder) is None:
                continue
            result = subprocess.run(
                [*argv, local_name, f"docker://{target}"],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if result.returncode == 0:
                return target
            raise RegistryError(f"{builder} push {local_name}: {result.stderr.strip()}")
        raise RegistryError(
            f"cannot push {local_name}: neither buildah nor podman is installed (`make images`)"
        )
