#!/usr/bin/env bash
# Builds actionlint (CI checks .github/workflows with it) from its Go module into the
# cache, keyed by version, beside the control plane's own directory (whose stamp it never
# touches). Idempotent: a finished build leaves a stamp file. Prints the binary's path.
set -euo pipefail

ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"
CACHE="${CELERIAC_CACHE:-$HOME/.cache/celeriac}"
BIN="$CACHE/bin/actionlint-$ACTIONLINT_VERSION"

if [ ! -f "$BIN/.complete" ]; then
  command -v go >/dev/null || { echo "go is required to build actionlint" >&2; exit 1; }
  mkdir -p "$BIN"
  echo ">> building actionlint $ACTIONLINT_VERSION" >&2
  CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$BIN" \
    go install -trimpath -ldflags "-s -w" "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" >&2
  touch "$BIN/.complete"
fi
echo "$BIN/actionlint"
