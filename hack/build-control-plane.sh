#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok, helm) from Go modules into a cache keyed by version.
# Idempotent: a finished build leaves a stamp file and is not redone.
# Progress (one line per component) goes to stderr; Go's own output to a log file.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.32.13}"
KWOK_VERSION="${KWOK_VERSION:-v0.7.0}"
HELM_VERSION="${HELM_VERSION:-v3.17.4}"
CACHE="${CELERIAC_CACHE:-$HOME/.cache/celeriac}"
BIN="$CACHE/bin/k8s-$K8S_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION"
STAMP="$BIN/.complete"

if [ -f "$STAMP" ]; then
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build the control plane" >&2; exit 1; }
mkdir -p "$BIN" "$CACHE/build"
LOG="$CACHE/build/control-plane-$K8S_VERSION.log"
: > "$LOG"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

started=$SECONDS
elapsed() { local s=$((SECONDS - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }
say() { echo "$*" >&2; }
fail() {
  say "!! control-plane build failed at: $1; the last lines of $LOG:"
  tail -n 20 "$LOG" >&2
  say "!! full Go output: $LOG"
  exit 1
}

say ">> cold build of the local control plane into $BIN"
say "   usually 8-16 min on 2 cores (module downloads included); later runs reuse the cache"
say "   Go's output: $LOG"

# Runs one step with its output in the log, then says how long it took.
step() {
  local what="$1"
  shift
  local t=$SECONDS
  say "   $what ..."
  "$@" >>"$LOG" 2>&1 || fail "$what"
  say "   $what done in $(elapsed "$t")"
}

# k8s.io/kubernetes pins its staging modules at v0.0.0 through replace
# directives that only work inside its own repo, so `go install` fails.
# A wrapper module re-points each one at its published v0.<minor>.<patch>.
minor_patch="${K8S_VERSION#v1.}"
wrap="$CACHE/build/k8s-$K8S_VERSION"
mkdir -p "$wrap"
# The module proxy lacks a few staging releases (k8s.io/endpointslice v0.32.13 answers
# 403). Fall back to the nearest earlier patch of the same minor; staging modules
# change little between patches.
staging_release() {
  local m="$1" patch="${minor_patch#*.}" minor="${minor_patch%%.*}"
  while [ "$patch" -ge 0 ]; do
    if go mod download "$m@v0.$minor.$patch" >>"$LOG" 2>&1; then
      echo "v0.$minor.$patch"
      return 0
    fi
    patch=$((patch - 1))
  done
  echo "no release of $m for v0.$minor.x on the module proxy" >&2
  return 1
}
write_wrapper_module() {
  local gomod_file
  # set -e does not apply inside a function run as `step ... || fail`: check each result.
  gomod_file=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -n "$gomod_file" ] || return 1
  {
    echo "module celeriac.local/controlplane"
    echo
    echo "go 1.23.0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    grep -E '^\s*k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$gomod_file" | awk '{print $1}' | sort -u |
      while read -r m; do echo "replace $m => $m $(staging_release "$m")"; done
  } > "$wrap/go.mod" || return 1
  ! grep -q ' => k8s.io/[a-z0-9-]* $' "$wrap/go.mod" || return 1
  echo "package controlplane" > "$wrap/tools.go"
}
step "resolving k8s.io/kubernetes $K8S_VERSION and its staging modules" write_wrapper_module

ver_pkgs="k8s.io/component-base/version k8s.io/client-go/pkg/version"
major=1; minor="${minor_patch%%.*}"
ldflags="-s -w"
for p in $ver_pkgs; do
  ldflags="$ldflags -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

build_k8s() {
  local cmd="$1"
  (cd "$wrap" &&
    go get "k8s.io/kubernetes/cmd/$cmd@$K8S_VERSION" &&
    go build -p 2 -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd") &&
    mv "$BIN/$cmd.tmp" "$BIN/$cmd"
}
for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
  [ -x "$BIN/$cmd" ] || step "$cmd $K8S_VERSION" build_k8s "$cmd"
done

for cmd in kwok kwokctl; do
  [ -x "$BIN/$cmd" ] ||
    step "$cmd $KWOK_VERSION" env GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/$cmd@$KWOK_VERSION"
done

[ -x "$BIN/helm" ] ||
  step "helm $HELM_VERSION" env GOBIN="$BIN" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"

touch "$STAMP"
say ">> control plane built in $(elapsed "$started")"
echo "$BIN"
