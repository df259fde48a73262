# Joining or changing namespaces and roots: setns, chroot, pivot_root.
r=$(perl -e '
  open(my $f, "<", "/proc/self/ns/user") or die "$!";
  my $r = syscall(308, fileno($f), 0);
  if ($r == -1) { my ($e) = grep { $!{$_} } keys %!; print "err $e\n" } else { print "ok\n" }
')
refused "setns(its own user ns)" "$r" EPERM
refused "chroot(/tmp)" "$(sys 161 /tmp)" EPERM
refused "pivot_root" "$(sys 155 /tmp /tmp)" EPERM
blocked "setns, chroot, pivot_root refused (EPERM)"
