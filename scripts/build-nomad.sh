#!/usr/bin/env bash
# Builds the Nomad agent from its Go module (no binary can be downloaded) into
# .cache/nomad/nomad, once: a cold build takes about 5 minutes.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
version=${NOMAD_VERSION:-v1.11.3}
# The api pseudo-version the module proxy serves for v1.11.3 (see go.mod).
api=${NOMAD_API_VERSION:-v0.0.0-20260324203407-b27b0c2e019a}
out="$top/.cache/nomad"
bin="$out/nomad"
if [ -x "$bin" ] && [ "$(cat "$out/version" 2>/dev/null)" = "$version" ]; then
  echo "nomad agent: cached at $bin"
  exit 0
fi
mkdir -p "$out/mod"
cd "$out/mod"
src=$(go mod download -json "github.com/hashicorp/nomad@$version" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
cat > go.mod <<MOD
module bwrap-r.local/nomad-agent

go 1.25

require github.com/hashicorp/nomad $version

replace (
	github.com/Microsoft/go-winio => github.com/endocrimes/go-winio v0.4.13-0.20190628114223-fb47a8b41948
	github.com/hashicorp/hcl => github.com/hashicorp/hcl v1.0.1-nomad-1
	github.com/hashicorp/nomad/api => github.com/hashicorp/nomad/api $api
)
MOD
# Nomad's own go.sum; `go mod tidy` must not run here (a docker test dependency breaks it).
cp "$src/go.sum" go.sum
chmod u+w go.sum
echo "nomad agent: building $version (about 5 minutes cold)"
GOFLAGS=-mod=mod go build -trimpath -o "$bin.tmp" github.com/hashicorp/nomad
mv "$bin.tmp" "$bin"
echo "$version" > "$out/version"
"$bin" version
