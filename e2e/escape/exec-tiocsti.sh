# Run through `nomad alloc exec` (no terminal): TIOCSTI on the exec'd
# command's stdin, stdout, stderr and /dev/tty must fail.
r=$(perl -e '
  my @ok;
  my @err;
  for my $fd (0, 1, 2) { my $c = "x"; open(my $h, "+<&=", $fd) or next; if (ioctl($h, 0x5412, $c)) { push @ok, "fd$fd" } else { push @err, "fd$fd: $!" } }
  if (open(my $t, "+<", "/dev/tty")) { my $c = "x"; push @ok, "/dev/tty" if ioctl($t, 0x5412, $c) } else { push @err, "/dev/tty: $!" }
  print @ok ? "ESCAPE @ok\n" : "none: " . join(", ", @err) . "\n";
')
case "$r" in ESCAPE*) escaped "TIOCSTI in alloc exec succeeded: $r" ;; none:*) ;; *) fail "perl: $r" ;; esac
blocked "TIOCSTI in alloc exec: $r"
