#!/usr/bin/env bash
# make test-v2: runs bwrap-r's sandbox, driver and preflight tests and an e2e
# subset (through a real Nomad agent) on a cgroups v2 kernel, in a qemu guest
# built from Debian's packages alone: Debian's kernel (the version
# linux-image-amd64 depends on), busybox-static for the initramfs, kmod's
# depmod. No image is downloaded and nothing leaves the machine: the guest has
# no network device. Its root is the host's / (read-only, over 9p) under a
# tmpfs overlay, with only cgroup2 mounted at /sys/fs/cgroup; a writable 9p
# share carries the test binaries and the guest's script in and the results
# out. The kernel and the initramfs are cached in .cache/v2-guest/.
#
#   scripts/v2-guest.sh          # deps, kernel, initramfs, binaries, boot, results
#   scripts/v2-guest.sh deps     # only install qemu, busybox-static and kmod
#
# V2_SUITES (default "bwrap driver preflight e2e") and V2_E2E_RUN (a -test.run
# pattern) choose what runs; NOMAD_BIN and CONSUL_BIN the agents;
# BWRAP_R_NODE_LOCK the lock file held while the guest runs ("" for none, as
# when the caller holds it already: flock on a second descriptor would wait
# for ever).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
cache=$top/.cache/v2-guest
run=$cache/run

# The e2e tests the guest runs: every limit, stat and stop path of the
# cgroup code, recovery and exec, and the managed egress rules.
e2e_default='^(TestBatchJobLogs|TestOOMKilled|TestStatsOfBusyTask|TestStatsAgainstRawExec|TestCgroupLimits|TestCgroupStop|TestRecovery|TestExec|TestPreflightEgressRules)$'
suites=${V2_SUITES:-bwrap driver preflight e2e}
e2e_run=${V2_E2E_RUN:-$e2e_default}
# Go build tags (make test-v2: preload, with bwrap/preload.so built).
tags=${GO_TAGS:-}
nomad_bin=${NOMAD_BIN:-$top/.cache/nomad/nomad}
consul_bin=${CONSUL_BIN:-$top/.cache/consul/consul}
lock=${BWRAP_R_NODE_LOCK-/tmp/bwrap-r-node.lock}

say() { echo "v2-guest: $*"; }

deps() {
	local missing=() p
	for p in qemu-system-x86 busybox-static kmod; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		say "installing ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
}

# kernel_package prints linux-image-<version>-amd64, the one package
# linux-image-amd64 depends on: never a glob (that would fetch every kernel
# the archive has).
kernel_package() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -1
}

# kernel extracts that package into $cache/kernel/<version>, once; it sets
# kver, vmlinuz and moddir.
kernel() {
	local pkg
	pkg=$(kernel_package)
	if [ -z "$pkg" ]; then
		apt-get update -qq
		pkg=$(kernel_package)
	fi
	[ -n "$pkg" ] || { say "apt-cache knows no linux-image-amd64"; exit 1; }
	kver=${pkg#linux-image-}
	local dir=$cache/kernel/$kver
	vmlinuz=$dir/boot/vmlinuz-$kver
	moddir=$dir/lib/modules/$kver
	if [ -f "$dir/.complete" ]; then
		say "kernel $kver: cached"
		return
	fi
	say "kernel $kver: downloading $pkg"
	rm -rf "$cache/kernel" "$cache"/initramfs-*
	mkdir -p "$cache/kernel/dl"
	(cd "$cache/kernel/dl" && apt-get download -q -o APT::Sandbox::User=root "$pkg")
	dpkg-deb -x "$cache/kernel/dl/${pkg}_"*.deb "$dir"
	rm -rf "$cache/kernel/dl"
	depmod -b "$dir" "$kver"
	touch "$dir/.complete"
}

# module_order prints the .ko paths (relative to moddir) that the named
# modules need, each after its dependencies.
module_order() {
	declare -A deps seen
	local line mod rest
	while IFS= read -r line; do
		mod=${line%%:*}
		rest=${line#*:}
		deps[$mod]=$rest
	done <"$moddir/modules.dep"
	local order=()
	visit() {
		local m=$1 d
		[ -n "${seen[$m]:-}" ] && return
		seen[$m]=1
		for d in ${deps[$m]}; do visit "$d"; done
		order+=("$m")
	}
	local name path
	for name in "$@"; do
		path=$(grep -E "(^|/)$name\.ko:" "$moddir/modules.dep" | cut -d: -f1)
		[ -n "$path" ] || { say "module $name not in $kver"; exit 1; }
		visit "$path"
	done
	printf '%s\n' "${order[@]}"
}

# initramfs packs busybox, the modules that mount the root (virtio PCI, 9p,
# overlay) and scripts/v2-guest-init.sh as /init; cached by its inputs.
initramfs() {
	local mods key
	mods=$(module_order virtio_pci 9pnet_virtio 9p overlay)
	key=$(cat /bin/busybox scripts/v2-guest-init.sh <(echo "$kver $mods") | sha256sum | cut -c1-16)
	initrd=$cache/initramfs-$kver-$key.cpio.gz
	if [ -f "$initrd" ]; then
		say "initramfs: cached"
		return
	fi
	rm -f "$cache"/initramfs-*
	local root=$cache/initramfs.d m
	rm -rf "$root"
	mkdir -p "$root"/{bin,dev,proc,sys,modules}
	cp /bin/busybox "$root/bin/busybox"
	install -m 0755 scripts/v2-guest-init.sh "$root/init"
	: >"$root/modules.load"
	for m in $mods; do
		cp "$moddir/$m" "$root/modules/"
		basename "$m" >>"$root/modules.load"
	done
	(cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$initrd.tmp"
	mv "$initrd.tmp" "$initrd"
	rm -rf "$root"
	say "initramfs: built ($(du -k "$initrd" | cut -f1) KiB)"
}

# binaries builds on the host what the guest runs: test binaries (run there
# as root, as go test would) and the plugin for the e2e agents.
binaries() {
	rm -rf "$run"
	mkdir -p "$run/bin"
	local s
	for s in $suites; do
		case $s in
		bwrap | driver | preflight) go test -tags "$tags" -c -o "$run/bin/$s.test" "./$s/" ;;
		e2e)
			go test -tags "$tags" -c -o "$run/bin/e2e.test" ./e2e/
			go build -tags "$tags" -o "$run/bin/bwrap-r" ./cmd/bwrap-r
			[ -x "$nomad_bin" ] || { say "no Nomad agent at $nomad_bin (make nomad)"; exit 1; }
			;;
		*) say "unknown suite $s"; exit 1 ;;
		esac
	done
	install -m 0755 scripts/v2-guest-run.sh "$run/run.sh"
	{
		printf 'REPO=%q\nKVER=%q\nMODDIR=%q\n' "$top" "$kver" "$moddir"
		printf 'SUITES=%q\nE2E_RUN=%q\nGO_TAGS=%q\n' "$suites" "$e2e_run" "$tags"
		printf 'NOMAD_BIN=%q\nCONSUL_BIN=%q\n' "$nomad_bin" "$consul_bin"
	} >"$run/guest.env"
}

boot() {
	local qemu=(qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m 6144
		-nographic -no-reboot -net none
		-kernel "$vmlinuz" -initrd "$initrd"
		-append "console=ttyS0 quiet panic=-1 cgroup_no_v1=all v2share=$run"
		-virtfs "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap"
		-virtfs "local,path=$run,mount_tag=share,security_model=passthrough,multidevs=remap")
	# Emulation takes both cores: timing-sensitive tests of others on this
	# node must not run meanwhile.
	if [ -n "$lock" ]; then
		local w=$(date +%s)
		say "waiting for $lock"
		exec 9>>"$lock"
		flock 9
		say "lock held after $(($(date +%s) - w))s"
	fi
	local t=$(date +%s)
	say "booting (suites: $suites)"
	timeout 35m "${qemu[@]}" </dev/null 9>&- || say "qemu exited with $?"
	say "guest ran $(($(date +%s) - t))s"
	[ -z "$lock" ] || exec 9>&-
}

# report prints the summary and fails unless every suite passed.
report() {
	local res=$run/results
	if [ ! -f "$res/status" ] || [ ! -f "$res/summary" ]; then
		say "the guest wrote no results"
		exit 1
	fi
	echo
	echo "cgroups v2 guest: $(head -1 "$res/guest-info")"
	grep -v '^SUITE' "$res/summary" | awk '{ printf "  %-4s %-9s %-50s %8ss\n", $1, $2, $3, $4 }'
	grep '^SUITE' "$res/summary" | awk '{ printf "suite %-9s %s in %ss\n", $3, $2, $4 }'
	local s
	for s in $(awk '$1 == "SUITE" && $2 == "FAIL" { print $3 }' "$res/summary"); do
		echo "--- $s: failed; the end of its log ($res/$s.log):"
		tail -150 "$res/$s.log"
	done
	[ "$(cat "$res/status")" = 0 ] || { say "$(cat "$res/status") suite(s) failed on cgroups v2"; exit 1; }
	say "every suite passed on cgroups v2"
}

deps
[ "${1:-}" = deps ] && exit 0
t0=$(date +%s)
kernel
initramfs
binaries
say "ready in $(($(date +%s) - t0))s"
boot
report
