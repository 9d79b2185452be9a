#!/usr/bin/env bash
# Builds the Python base image the project's Dockerfiles are built on here, from Debian
# packages with mmdebstrap (Docker Hub, and so python:3.11-slim, is not reachable on the
# development machines). The result is a root filesystem tarball cached under
# $CELERIAC_CACHE/base keyed by Debian suite, python3 version and architecture; a finished
# build leaves a stamp file and is not redone. Prints the tarball's path.
#
# Packages come from the Debian mirror this machine's apt uses (its deb822 sources file),
# so the image holds Debian's python3, not a download from anywhere else.
set -euo pipefail

# Bump when the package set or the clean-up below changes: it is part of the cache key.
RECIPE=1
PACKAGES="python3,python3-venv,python-is-python3,ca-certificates"
CACHE="${CELERIAC_CACHE:-$HOME/.cache/celeriac}"
SOURCES="${CELERIAC_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}"

command -v mmdebstrap >/dev/null || { echo "mmdebstrap is required (apt-get install mmdebstrap)" >&2; exit 1; }
[ -f "$SOURCES" ] || { echo "no apt sources at $SOURCES (set CELERIAC_APT_SOURCES)" >&2; exit 1; }

suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
arch=$(dpkg --print-architecture)
python_version=$(apt-cache policy python3 | sed -n 's/^ *Candidate: *//p')
[ -n "$python_version" ] && [ "$python_version" != "(none)" ] ||
  { echo "apt knows no python3 candidate: run apt-get update" >&2; exit 1; }
key="debian-$suite-python3-${python_version//[^A-Za-z0-9.]/_}-$arch-r$RECIPE"
out="$CACHE/base/$key"
if [ -f "$out/.complete" ]; then
  echo "$out/rootfs.tar"
  exit 0
fi
mkdir -p "$out"
echo ">> mmdebstrap $suite ($PACKAGES) from $SOURCES" >&2
# minbase keeps apt and passwd (useradd), like the official slim image; documentation,
# manuals and translations are left out, and apt's lists are dropped from the result.
SOURCE_DATE_EPOCH=0 mmdebstrap --variant=minbase --format=tar --include="$PACKAGES" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
  "$suite" "$out/rootfs.tar.tmp" "$SOURCES" >&2
mv "$out/rootfs.tar.tmp" "$out/rootfs.tar"
echo "$python_version" > "$out/python3.version"
touch "$out/.complete"
echo "$out/rootfs.tar"
