#!/usr/bin/env bash
# Print the Debian mirror URI this machine's apt uses for SUITE (default bookworm), read from
# /etc/apt/sources.list and /etc/apt/sources.list.d/ at build time: no host is written into the repo.
set -euo pipefail
suite=${1:-bookworm}
shopt -s nullglob
for f in /etc/apt/sources.list.d/*.sources; do
    # deb822 stanzas: pick the URIs of a stanza whose Suites list contains exactly $suite.
    awk -v suite="$suite" '
        /^[[:space:]]*#/ {next}
        /^[[:space:]]*$/ {if (uri && ok && main) {print uri; exit} uri=""; ok=0; main=0; next}
        /^URIs:/ {uri=$2}
        /^Suites:/ {for (i = 2; i <= NF; i++) if ($i == suite) ok=1}
        /^Components:/ {for (i = 2; i <= NF; i++) if ($i == "main") main=1}
        END {if (uri && ok && main) print uri}' "$f"
done | head -n1 | grep . && exit 0
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    # one-line form: deb [options] URI SUITE COMPONENTS...
    awk -v suite="$suite" '$1 == "deb" {
        sub(/\[[^]]*\][[:space:]]*/, "");
        if ($3 == suite) {print $2; exit}}' "$f"
done | head -n1 | grep . && exit 0
echo "apt-mirror: no apt source for suite $suite with component main" >&2
exit 1
