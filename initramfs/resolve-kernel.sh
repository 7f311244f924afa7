#!/usr/bin/env bash
# Print the concrete linux-image-*-cloud-amd64 package the metapackage currently depends on.
set -euo pipefail
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [[ -z "$pkg" ]]; then
    echo "resolve-kernel: linux-image-cloud-amd64 not found (run apt-get update)" >&2
    exit 1
fi
echo "$pkg"
