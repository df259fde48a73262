#!/usr/bin/env bash
# Builds the Consul agent from its Go module (no binary can be downloaded) into
# .cache/consul/consul, once, and reuses it afterwards.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
version=${CONSUL_VERSION:-v1.20.0}
out="$top/.cache/consul"
bin="$out/consul"
if [ -x "$bin" ] && [ "$(cat "$out/version" 2>/dev/null)" = "$version" ]; then
  echo "consul agent: cached at $bin"
  exit 0
fi
mkdir -p "$out/mod"
cd "$out/mod"
src=$(go mod download -json "github.com/hashicorp/consul@$version" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
# Consul's go.mod replaces its submodules (api, sdk, ...) with local directories
# and excludes go-msgpack v1.1.5/v1.1.6; both are ignored in a dependency, so
# they are restated here. The submodules are pinned to the versions Consul's
# go.mod requires, except troubleshoot: v0.7.2 was never tagged, so use v0.7.1.
cat > go.mod <<MOD
module bwrap-r.local/consul-agent

go 1.22

require github.com/hashicorp/consul $version

replace (
	github.com/hashicorp/consul/api => github.com/hashicorp/consul/api v1.29.5
	github.com/hashicorp/consul/envoyextensions => github.com/hashicorp/consul/envoyextensions v0.7.4
	github.com/hashicorp/consul/proto-public => github.com/hashicorp/consul/proto-public v0.6.3
	github.com/hashicorp/consul/sdk => github.com/hashicorp/consul/sdk v0.16.1
	github.com/hashicorp/consul/troubleshoot => github.com/hashicorp/consul/troubleshoot v0.7.1
)

exclude (
	github.com/hashicorp/go-msgpack v1.1.5
	github.com/hashicorp/go-msgpack v1.1.6
)
MOD
# Consul's own go.sum (read-only in the module cache); never `go mod tidy` here.
cp "$src/go.sum" go.sum
chmod u+w go.sum
echo "consul agent: building $version (several minutes cold)"
GOFLAGS=-mod=mod go build -trimpath -o "$bin.tmp" github.com/hashicorp/consul
mv "$bin.tmp" "$bin"
echo "$version" > "$out/version"
"$bin" version
