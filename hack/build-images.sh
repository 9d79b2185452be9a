#!/usr/bin/env bash
# `make images`: builds the operator image (operator/Dockerfile) and the worker image
# (worker-image/Dockerfile) with whichever of docker, podman or buildah works here, on the
# Python base image from hack/build-base-image.sh (BASE_IMAGE=... uses another one, e.g.
# python:3.11-slim where Docker Hub is reachable). Prints one line per image: name and size.
#
#   IMAGE_PREFIX  name prefix of the built images (default localhost/celeriac)
#   IMAGE_TAG     their tag (default: the chart's appVersion)
#   BUILDER       force docker, podman or buildah
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE_PREFIX="${IMAGE_PREFIX:-localhost/celeriac}"
IMAGE_TAG="${IMAGE_TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' deploy/celeriac/Chart.yaml)}"

# A docker client without a reachable daemon (as on the development machines) is no builder.
pick_builder() {
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then echo docker
  elif command -v podman >/dev/null; then echo podman
  elif command -v buildah >/dev/null; then echo buildah
  else
    echo "no image builder: install docker, podman or buildah (apt-get install buildah)" >&2
    return 1
  fi
}
BUILDER="${BUILDER:-$(pick_builder)}"

image_exists() {
  case "$BUILDER" in
    docker) docker image inspect "$1" >/dev/null 2>&1 ;;
    podman) podman image exists "$1" ;;
    buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
  esac
}

# The cached Debian root filesystem becomes an image named after its cache key, once per
# builder storage.
import_base() {
  local rootfs name
  rootfs=$(bash hack/build-base-image.sh)
  name="localhost/celeriac-base/python:$(basename "$(dirname "$rootfs")")"
  if ! image_exists "$name"; then
    echo ">> importing $rootfs as $name ($BUILDER)" >&2
    case "$BUILDER" in
      docker | podman)
        "$BUILDER" import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$rootfs" "$name" >/dev/null ;;
      buildah)
        local ctr
        ctr=$(buildah from scratch)
        buildah add --quiet "$ctr" "$rootfs" / >/dev/null
        buildah config --env LANG=C.UTF-8 --cmd '["python3"]' "$ctr"
        buildah commit --quiet --rm "$ctr" "$name" >/dev/null ;;
    esac
  fi
  echo "$name"
}
BASE_IMAGE="${BASE_IMAGE:-$(import_base)}"

# Where the build network intercepts TLS with its own CA (PIP_CERT names the bundle that
# trusts it, as on the development machines), podman and buildah mount that bundle into the
# RUN steps (a build-time volume, never a layer) and the build stage's ARG points pip at it.
# docker build has no build-time volumes: there pip trusts only the base image's CAs.
pip_cert_args=()
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ] && [ "$BUILDER" != docker ]; then
  pip_cert_args=(-v "$PIP_CERT:/run/pip-cert.pem:ro" --build-arg PIP_CERT=/run/pip-cert.pem)
fi

build() {
  local tag="$1"; shift
  echo ">> $BUILDER build $tag (BASE_IMAGE=$BASE_IMAGE)" >&2
  local args=(--quiet --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$tag")
  # docker format: OCI image configs have no HEALTHCHECK (the worker image declares one).
  [ "$BUILDER" = docker ] || args+=(--layers --format docker "${pip_cert_args[@]}")
  "$BUILDER" build "${args[@]}" "$@" >&2
}

size_of() {
  case "$BUILDER" in
    docker) docker image inspect --format '{{.Size}}' "$1" ;;
    podman) podman image inspect --format '{{.Size}}' "$1" ;;
    buildah) buildah images --format '{{.Size}}' "$1" ;;
  esac
}

build "$IMAGE_PREFIX/operator:$IMAGE_TAG" -f operator/Dockerfile .
build "$IMAGE_PREFIX/worker:$IMAGE_TAG" worker-image
for image in "$IMAGE_PREFIX/operator:$IMAGE_TAG" "$IMAGE_PREFIX/worker:$IMAGE_TAG"; do
  echo "$image $(size_of "$image")"
done
