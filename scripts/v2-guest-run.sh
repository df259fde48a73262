#!/bin/bash
# Pid 1 of the cgroups v2 guest (scripts/v2-guest.sh copies it into the share
# as run.sh). It sets the guest up as a v2 node (cgroup2 alone at
# /sys/fs/cgroup, the kernel's nf_tables modules, loopback), runs the test
# binaries the host built, writes each suite's log and a summary into the
# share, and powers the guest off. The host learns the outcome from the
# summary and the status file only: a guest that dies writes neither.
set -u
share=$(dirname "$(readlink -f "$0")")
# shellcheck source=/dev/null
. "$share/guest.env" # REPO KVER MODDIR SUITES E2E_RUN NOMAD_BIN CONSUL_BIN
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
res=$share/results
mkdir -p "$res"
log() { echo "v2-guest: $*"; }
poweroff_now() {
	sync
	echo o >/proc/sysrq-trigger
	sleep 60
}
trap poweroff_now EXIT

# The host's /tmp and /run came through the lower layer: fresh ones.
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /dev/pts /dev/shm
mount -t devpts -o mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
# cgroups v2 only: the kernel runs with cgroup_no_v1=all.
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# The kernel's own modules (the host's root has none for it): nft loads
# nf_tables and its expressions on demand through modprobe.
mkdir -p "/lib/modules/$KVER"
mount --bind "$MODDIR" "/lib/modules/$KVER"
for m in nf_tables nft_ct nft_reject_inet nft_fib_inet nf_conntrack; do
	modprobe "$m" || log "modprobe $m failed"
done
ip link set lo up
hostname v2-guest
[ -e /proc/sys/kernel/unprivileged_userns_clone ] && echo 1 >/proc/sys/kernel/unprivileged_userns_clone

{
	echo "kernel $(uname -r)"
	echo "cgroup mounts: $(grep cgroup /proc/mounts | tr '\n' ';')"
	echo "controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
	echo "cpus: $(nproc) memory: $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
} | tee "$res/guest-info"

mkdir -p /tmp/t && chmod 0711 /tmp/t
export TMPDIR=/tmp/t
# Built with the preloaded launcher (make test-v2): its tests fail, not skip.
[ -n "$GO_TAGS" ] && export BWRAP_R_WANT_PRELOAD=1
summary=$res/summary
: >"$summary"
failed=0

# run_suite NAME DIR BINARY ARGS...: runs a test binary in DIR (its package
# dir, as go test would) and adds its tests' results to the summary:
# "PASS|FAIL|SKIP suite test seconds" lines, then "SUITE PASS|FAIL name
# seconds".
run_suite() {
	local name=$1 dir=$2 bin=$3
	shift 3
	log "$name: starting"
	local t0 t1 rc
	t0=$(date +%s.%N)
	(cd "$dir" && "$bin" -test.v -test.count=1 "$@") >"$res/$name.log" 2>&1
	rc=$?
	t1=$(date +%s.%N)
	sed -n 's/^--- \(PASS\|FAIL\|SKIP\): \([^ ]*\) (\([0-9.]*\)s)$/\1 '"$name"' \2 \3/p' "$res/$name.log" >>"$summary"
	local secs result=PASS
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	if [ "$rc" != 0 ]; then
		result=FAIL
		failed=$((failed + 1))
		grep -q "^FAIL $name " "$summary" || grep -q '^--- FAIL' "$res/$name.log" ||
			echo "FAIL $name (exit-$rc:-see-log) $secs" >>"$summary"
	fi
	echo "SUITE $result $name $secs" >>"$summary"
	log "$name: $result in ${secs}s"
}

for s in $SUITES; do
	case $s in
	bwrap) run_suite bwrap "$REPO/bwrap" "$share/bin/bwrap.test" -test.timeout=6m ;;
	driver) run_suite driver "$REPO/driver" "$share/bin/driver.test" -test.timeout=12m ;;
	preflight) run_suite preflight "$REPO/preflight" "$share/bin/preflight.test" -test.timeout=3m ;;
	e2e)
		BWRAP_R_E2E=1 NOMAD_BIN=$NOMAD_BIN CONSUL_BIN=$CONSUL_BIN BWRAP_R_PLUGIN=$share/bin/bwrap-r \
			run_suite e2e "$REPO/e2e" "$share/bin/e2e.test" -test.timeout=12m -test.run "$E2E_RUN"
		;;
	*) log "unknown suite $s" && failed=$((failed + 1)) ;;
	esac
done

dmesg >"$res/dmesg" 2>&1
echo "$failed" >"$res/status"
log "done: $failed suite(s) failed"
