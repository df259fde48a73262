# PTRACE_ATTACH (16) to the agent, another task's process and the probe's own
# child; PTRACE_TRACEME (0); process_vm_readv (310) of its own child. The
# filter refuses ptrace outright, even of the task's own processes.
sleep 30 &
child=$!
trap 'kill -9 $child 2>/dev/null' EXIT
[ -n "$AGENT_PID" ] && [ -n "$VICTIM_PID" ] || fail "AGENT_PID / VICTIM_PID not set"
refused "PTRACE_ATTACH to the agent $AGENT_PID" "$(sys 101 16 "$AGENT_PID" 0 0)"
refused "PTRACE_ATTACH to the victim $VICTIM_PID" "$(sys 101 16 "$VICTIM_PID" 0 0)"
refused "PTRACE_ATTACH to its own child" "$(sys 101 16 "$child" 0 0)" EPERM
refused "PTRACE_TRACEME" "$(sys 101 0 0 0 0)" EPERM
r=$(perl -e '
  my $buf = "\0" x 16; my $liov = pack("QQ", unpack("Q", pack("p", $buf)), 16);
  my $riov = pack("QQ", 0x400000, 16);
  my $r = syscall(310, $ARGV[0], $liov, 1, $riov, 1, 0);
  if ($r == -1) { my ($e) = grep { $!{$_} } keys %!; print "err $e\n" } else { print "ok $r\n" }
' "$child")
refused "process_vm_readv of its own child" "$r" EPERM
blocked "ptrace and process_vm_readv refused (EPERM), also for its own child"
