#!/usr/bin/env bash
# Build the Envoy Gateway peer harness from the Go module proxy into a cache outside the repository,
# once per Envoy Gateway version and source hash; print the binary's path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(awk '$1 == "github.com/envoyproxy/gateway" {print $2; exit} $1 == "require" && $2 == "github.com/envoyproxy/gateway" {print $3; exit}' "$here/go.mod")"
hash="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-12)"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/mcgw-peers/envoy-gateway-$version-$hash"
if [[ ! -x "$dir/harness" ]]; then
  mkdir -p "$dir"
  (cd "$here" && go mod download && go build -trimpath -o "$dir/.harness.partial" .) >&2
  mv "$dir/.harness.partial" "$dir/harness"
fi
echo "$dir/harness"
