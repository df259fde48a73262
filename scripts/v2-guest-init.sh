#!/bin/busybox sh
# /init of the cgroups v2 guest's initramfs (scripts/v2-guest.sh packs it with
# busybox and the kernel's virtio, 9p and overlay modules). It mounts the
# host's / read-only over 9p under a tmpfs overlay, mounts the writable share
# at its host path (so every path reads the same in the guest as on the host),
# and hands over to the share's run.sh as pid 1 of the new root.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {
	echo "v2-guest init: $*"
	echo o >/proc/sysrq-trigger
	sleep 60
}
share=$(sed -n 's/.* v2share=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$share" ] || fail "no v2share= on the kernel command line"
# In dependency order (scripts/v2-guest.sh resolved it from modules.dep).
for m in $(cat /modules.load); do
	insmod "/modules/$m" || fail "insmod $m"
done
mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /lower || fail "mount hostroot"
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail "mount overlay"
mkdir -p "/newroot$share"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share "/newroot$share" || fail "mount share"
for d in proc sys dev; do
	mount -o move "/$d" "/newroot/$d"
done
exec switch_root /newroot /bin/bash "$share/run.sh"
