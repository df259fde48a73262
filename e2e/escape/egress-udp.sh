# UDP to the metadata stand-in's port (the test listens for UDP there too
# and checks that no datagram arrived).
[ -n "$PORT_META" ] || fail "PORT_META not set"
r=$(perl -MSocket -e '
  socket(my $s, AF_INET, SOCK_DGRAM, 0) or die "$!";
  my $to = pack_sockaddr_in($ARGV[0], inet_aton("127.0.0.1"));
  my $sent = 0; my $err = "";
  for (1..3) { if (defined send($s, "bwrap-r-udp-probe\n", 0, $to)) { $sent++ } else { $err = "$!" } select(undef, undef, undef, 0.2) }
  print "sent $sent of 3", ($err ? " ($err)" : ""), "\n";
' "$PORT_META")
case "$r" in "sent 0 of 3"*) blocked "UDP to 127.0.0.1:$PORT_META: $r" ;; esac
escaped "UDP to 127.0.0.1:$PORT_META: $r (the test checks whether any arrived)"
