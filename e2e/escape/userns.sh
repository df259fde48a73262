# A new user namespace (where the task would be root again): unshare(1),
# unshare(2) and clone(2) with CLONE_NEWUSER, and clone3.
if unshare -U true 2>/dev/null; then escaped "unshare -U succeeded"; fi
if unshare -Ur id -u 2>/dev/null; then escaped "unshare -Ur succeeded"; fi
refused "unshare(CLONE_NEWUSER)" "$(sys 272 0x10000000)" EPERM
refused "unshare(CLONE_NEWNS)" "$(sys 272 0x20000)" EPERM
r=$(perl -MPOSIX -e '
  my $r = syscall(56, 0x10000011, 0, 0, 0, 0);   # CLONE_NEWUSER | SIGCHLD
  POSIX::_exit(0) if $r == 0;
  if ($r == -1) { my ($e) = grep { $!{$_} } keys %!; print "err $e\n" } else { waitpid($r, 0); print "ok $r\n" }
')
refused "clone(CLONE_NEWUSER)" "$r" EPERM
refused "clone3" "$(sys 435 0 0)" ENOSYS
blocked "unshare -U, unshare(CLONE_NEWUSER/NEWNS), clone(CLONE_NEWUSER) refused; clone3 ENOSYS"
