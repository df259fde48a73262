# Packet sockets (AF_PACKET, and the obsolete SOCK_PACKET on AF_INET): refused.
r=$(perl -MSocket -e '
  for my $t ([17, SOCK_RAW, 0x0300, "packet raw"], [17, SOCK_DGRAM, 0x0300, "packet dgram"], [AF_INET, 10, 0x0300, "inet SOCK_PACKET"]) {
    if (socket(my $s, $t->[0], $t->[1], $t->[2])) { print "ESCAPE $t->[3]\n"; exit 1 }
    print "$t->[3]: $! ";
  }
  print "done\n";
')
case "$r" in ESCAPE*) escaped "opened a packet socket: $r" ;; esac
case "$r" in *done) ;; *) fail "perl: $r" ;; esac
blocked "$r"
