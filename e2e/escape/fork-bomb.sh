# A shell fork bomb under pids_limit = 64, watched from the inside for 10 s
# by a perl that forks nothing itself (and from the host through the task's
# pids cgroup). RLIMIT_NPROC = 1000 is only a
# backstop for the node should the pids limit be missing.
exec perl -e '
  my $pid = fork();
  die "fork: $!" unless defined $pid;
  if ($pid == 0) {
    setpgrp(0, 0);
    my $lim = pack("QQ", 1000, 1000);
    syscall(160, 6, $lim) == 0 or die "setrlimit: $!";   # RLIMIT_NPROC
    open(STDERR, ">", "/dev/null");
    exec "/bin/sh", "-c", "b() { b | b & }; b; sleep 30";
  }
  my $max = 0;
  for (1 .. 20) {
    select(undef, undef, undef, 0.5);
    opendir(my $d, "/proc") or next;
    my $n = grep { /^\d+$/ } readdir($d);
    closedir($d);
    $max = $n if $n > $max;
    last if $max > 200;
  }
  kill("KILL", -$pid);
  # A listing of /proc takes time while the bomb churns: it can count more
  # processes than ever existed at once. The test reads the kernel count of the
  # task cgroup (pids.current, pids.events) on the host for the verdict.
  print "BLOCKED: the sandbox listed at most $max processes during 10 s of fork bomb\n";
  exit 0;
'
