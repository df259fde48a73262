# Device nodes beyond null, zero, full, random, urandom and tty: physical
# memory, kernel log, the host's disk (BLOCK_DEV), consoles, tun, fuse, kvm.
[ -n "$BLOCK_DEV" ] || fail "BLOCK_DEV not set"
r=$(perl -MFcntl -e '
  for my $d (@ARGV) { if (sysopen(my $f, $d, O_RDONLY)) { print "ESCAPE $d\n"; exit 1 } }
  print "none opened\n";
' /dev/mem /dev/kmem /dev/port /dev/kmsg "/dev/$BLOCK_DEV" /dev/sda /dev/vda /dev/nvme0n1 /dev/loop0 /dev/zram0 /dev/console /dev/tty0 /dev/tty1 /dev/net/tun /dev/fuse /dev/kvm /dev/ptmx /dev/hwrng /dev/cpu/0/msr /dev/watchdog)
case "$r" in ESCAPE*) escaped "opened a device: $r" ;; "none opened") ;; *) fail "perl: $r" ;; esac
extra=$(ls -A /dev | grep -vxE 'null|zero|full|random|urandom|tty|fd|stdin|stdout|stderr|shm|pts|ptmx' | tr '\n' ' ')
[ -z "$extra" ] || escaped "more in /dev than SECURITY.md lists: $extra"
# /dev/pts is the mount point of exec -t sessions' terminals: empty here.
[ -z "$(ls -A /dev/pts)" ] || escaped "ptys in the task's /dev/pts: $(ls -A /dev/pts | tr '\n' ' ')"
blocked "/dev holds only $(ls -A /dev | tr '\n' ' '); /dev/mem, kmsg, $BLOCK_DEV: $(cat /dev/mem 2>&1 | head -1)"
