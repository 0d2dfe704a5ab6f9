#!/usr/bin/env bash
# Installs the named Debian packages with apt-get, through sudo unless already root.
# Usage: scripts/apt-install.sh PACKAGE...
set -euo pipefail
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
