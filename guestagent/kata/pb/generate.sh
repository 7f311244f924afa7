#!/usr/bin/env bash
# Regenerates the checked-in *_pb2.py modules from the .proto files beside them.
# Uses Debian bookworm's protoc (protobuf-compiler 3.21): its output runs on bookworm's
# python3-protobuf 3.21 (the guest image) and on newer protobuf runtimes (the host tier).
# tests/kata/test_protos.py regenerates into a temporary directory and compares.
set -euo pipefail
cd "$(dirname "$0")/../../.."
out="${1:-.}"
protoc -I . --python_out="$out" guestagent/kata/pb/*.proto
