# Control: try_connect reaches a UNIX socket (path and abstract) that the
# task itself listens on, also with network = "none".
perl -MSocket -e '
  socket(my $l, AF_UNIX, SOCK_STREAM, 0) or die "$!";
  bind($l, pack_sockaddr_un("/tmp/self.sock")) or die "bind: $!";
  socket(my $m, AF_UNIX, SOCK_STREAM, 0) or die "$!";
  bind($m, pack_sockaddr_un("\0bwrap-r-self")) or die "bind abstract: $!";
  listen($l, 1); listen($m, 1); sleep 30;
' &
# The listener may take a while to start on a busy node.
for i in 1 2 3 4 5 6 7 8 9 10; do
  r1=$(try_connect unix /tmp/self.sock) && r2=$(try_connect abstract bwrap-r-self) && break
  sleep 1
done
r1=$(try_connect unix /tmp/self.sock) || fail "/tmp/self.sock: $r1"
r2=$(try_connect abstract bwrap-r-self) || fail "@bwrap-r-self: $r2"
kill $! 2>/dev/null
ok "/tmp/self.sock: $r1; @bwrap-r-self: $r2"
