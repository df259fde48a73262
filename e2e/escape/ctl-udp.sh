# Control: UDP to a port the rules do not deny (PORT_OPEN) goes out (the
# test counts the datagrams).
r=$(perl -MSocket -e '
  socket(my $s, AF_INET, SOCK_DGRAM, 0) or die "$!";
  my $to = pack_sockaddr_in($ARGV[0], inet_aton("127.0.0.1"));
  my $sent = 0;
  for (1..3) { $sent++ if defined send($s, "bwrap-r-udp-control\n", 0, $to); select(undef, undef, undef, 0.2) }
  print "sent $sent of 3\n";
' "$PORT_OPEN")
[ "$r" = "sent 3 of 3" ] || fail "UDP to 127.0.0.1:$PORT_OPEN: $r"
ok "UDP to 127.0.0.1:$PORT_OPEN: $r"
