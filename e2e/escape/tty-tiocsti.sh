# TIOCSTI (0x5412, push a byte into a terminal's input): the task runs in a
# new session without a controlling terminal.
r=$(perl -e '
  my @ok;
  my @err;
  for my $fd (0, 1, 2) { my $c = "x"; open(my $h, "+<&=", $fd) or next; if (ioctl($h, 0x5412, $c)) { push @ok, "fd$fd" } else { push @err, "fd$fd: $!" } }
  if (open(my $t, "+<", "/dev/tty")) { my $c = "x"; push @ok, "opened /dev/tty"; push @ok, "/dev/tty" if ioctl($t, 0x5412, $c) } else { push @err, "/dev/tty: $!" }
  print @ok ? "ESCAPE @ok\n" : "none: " . join(", ", @err) . "\n";
')
case "$r" in ESCAPE*) escaped "TIOCSTI or a controlling terminal: $r" ;; none:*) ;; *) fail "perl: $r" ;; esac
tty_nr=$(cut -d" " -f7 /proc/self/stat)
[ "$tty_nr" = 0 ] || escaped "the task has a controlling terminal (tty_nr $tty_nr)"
blocked "no controlling terminal; TIOCSTI fails ($r)"
