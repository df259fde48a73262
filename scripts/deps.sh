#!/usr/bin/env bash
# Installs what bwrap-r's demo and tests need from Debian's packages and the Go
# module proxy. Safe to run again: it installs only what is missing.
set -euo pipefail
pkgs=(bubblewrap r-base-core r-cran-shiny r-cran-plumber iptables nftables curl procps iproute2 util-linux containernetworking-plugins gcc libc6-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
cd "$(dirname "$0")/.."
go mod download
