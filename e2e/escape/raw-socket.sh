# Raw IP sockets (forged packets, sniffing): refused.
r=$(perl -MSocket -e '
  for my $t ([AF_INET, SOCK_RAW, 1, "inet raw icmp"], [AF_INET, SOCK_RAW, 255, "inet raw"], [AF_INET6, SOCK_RAW, 58, "inet6 raw icmpv6"],
             [AF_INET, SOCK_RAW | SOCK_CLOEXEC, 6, "inet raw|cloexec tcp"], [AF_INET, SOCK_RAW | SOCK_NONBLOCK, 17, "inet raw|nonblock udp"]) {
    if (socket(my $s, $t->[0], $t->[1], $t->[2])) { print "ESCAPE $t->[3]\n"; exit 1 }
    print "$t->[3]: $! ";
  }
  print "done\n";
')
case "$r" in ESCAPE*) escaped "opened a raw socket: $r" ;; esac
case "$r" in *done) ;; *) fail "perl: $r" ;; esac
blocked "$r"
