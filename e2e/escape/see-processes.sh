# Host and other tasks' processes: the sandbox has its own pid namespace.
[ -n "$AGENT_PID" ] && [ -n "$VICTIM_PID" ] || fail "AGENT_PID / VICTIM_PID not set"
for p in "$AGENT_PID" "$VICTIM_PID"; do
  [ -e "/proc/$p" ] && escaped "/proc/$p (a host process) is visible: $(cat /proc/$p/comm 2>&1)"
done
r=$(perl -e '
  opendir(my $d, "/proc") or die "$!";
  my @p = sort { $a <=> $b } grep { /^\d+$/ } readdir($d);
  my @seen;
  for my $p (@p) { open(my $f, "<", "/proc/$p/comm") or next; my $c = <$f>; chomp $c; push @seen, "$p:$c" }
  print scalar(@p), " ", join(",", @seen), "\n";
')
n=$(echo "$r" | cut -d" " -f1)
case "$r" in *:nomad*|*:sleep*|*:logmon*|*:bwrap-r*|*:systemd*|*:init*) escaped "sees foreign processes: $r" ;; esac
[ "$n" -le 6 ] || escaped "sees $n processes: $r"
blocked "sees only its own $n processes ($r)"
