# Kernel settings in /proc/sys: opened for writing, nothing written (a
# successful open is the escape, and changes nothing).
for s in kernel/sysrq kernel/core_pattern kernel/modprobe vm/overcommit_memory net/ipv4/ip_forward kernel/hostname; do
  r=$(perl -MFcntl -e 'if (sysopen(my $f, $ARGV[0], O_WRONLY)) { print "opened\n"; exit 0 } print "$!\n"; exit 1' "/proc/sys/$s")
  [ "$r" = opened ] && escaped "opened /proc/sys/$s for writing"
  [ -n "$r" ] || fail "perl printed nothing"
done
if sh -c 'echo 1 > /proc/sys/kernel/sysrq' 2>/dev/null; then escaped "wrote /proc/sys/kernel/sysrq"; fi
blocked "/proc/sys/kernel/sysrq: $(sh -c 'echo 1 > /proc/sys/kernel/sysrq' 2>&1)"
