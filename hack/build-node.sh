#!/usr/bin/env bash
# Builds what the local real node runs beside containerd (Debian's): kubelet and kube-proxy
# of the control plane's Kubernetes version (from the wrapper module hack/build-control-plane.sh
# writes, so both sides are one version), metrics-server, crane (the local OCI registry and
# image pushes) and the pod sandbox's pause binary. Its own directory and stamp under
# $CELERIAC_CACHE/bin, so the control plane's cache stays valid. Prints the directory.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.32.13}"
METRICS_SERVER_VERSION="${METRICS_SERVER_VERSION:-v0.8.0}"
CRANE_VERSION="${CRANE_VERSION:-v0.22.1}"
CACHE="${CELERIAC_CACHE:-$HOME/.cache/celeriac}"
BIN="$CACHE/bin/node-k8s-$K8S_VERSION-metrics-server-$METRICS_SERVER_VERSION-crane-$CRANE_VERSION"
HACK="$(cd "$(dirname "$0")" && pwd)"

if [ -f "$BIN/.complete" ]; then
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build the node" >&2; exit 1; }
mkdir -p "$BIN"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

# The wrapper module (replace directives for k8s.io/kubernetes' staging modules) comes from
# the control-plane build; running it is a no-op when its stamp exists.
K8S_VERSION="$K8S_VERSION" bash "$HACK/build-control-plane.sh" >/dev/null
wrap="$CACHE/build/k8s-$K8S_VERSION"
[ -f "$wrap/go.mod" ] || { echo "no wrapper module at $wrap" >&2; exit 1; }

minor_patch="${K8S_VERSION#v1.}"
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=${minor_patch%%.*} -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
for cmd in kubelet kube-proxy; do
  if [ ! -x "$BIN/$cmd" ]; then
    echo ">> building $cmd $K8S_VERSION" >&2
    (cd "$wrap" && go get "k8s.io/kubernetes/cmd/$cmd@$K8S_VERSION" >&2 &&
      go build -p 2 -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" >&2)
    mv "$BIN/$cmd.tmp" "$BIN/$cmd"
  fi
done

if [ ! -x "$BIN/metrics-server" ]; then
  echo ">> building metrics-server $METRICS_SERVER_VERSION" >&2
  GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION" >&2
fi
if [ ! -x "$BIN/crane" ]; then
  echo ">> building crane $CRANE_VERSION" >&2
  GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION" >&2
fi
if [ ! -x "$BIN/pause" ]; then
  echo ">> building pause" >&2
  (cd "$HACK/pause" && go build -trimpath -ldflags "-s -w" -o "$BIN/pause" .)
fi

touch "$BIN/.complete"
echo "$BIN"
