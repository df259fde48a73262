# Kernel memory and log through /proc.
for f in /proc/kcore /proc/kmsg; do
  if head -c 1 "$f" >/dev/null 2>&1; then escaped "read $f"; fi
done
# Opened for writing, nothing written: if the open succeeds, that is the escape.
r=$(perl -MFcntl -e 'if (sysopen(my $f, "/proc/sysrq-trigger", O_WRONLY)) { print "opened\n"; exit 0 } print "$!\n"; exit 1')
[ "$r" = opened ] && escaped "opened /proc/sysrq-trigger for writing"
[ -n "$r" ] || fail "perl printed nothing"
blocked "/proc/kcore: $(head -c 1 /proc/kcore 2>&1 >/dev/null); /proc/sysrq-trigger: $r"
