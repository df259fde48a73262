# A UNIX socket the test listens on in the host's /run (SOCK_RUN), and the
# usual system sockets.
[ -n "$SOCK_RUN" ] || fail "SOCK_RUN not set"
for s in "$SOCK_RUN" /run/dbus/system_bus_socket /var/run/dbus/system_bus_socket /run/systemd/private /run/systemd/journal/stdout /var/run/docker.sock /run/containerd/containerd.sock /dev/log; do
  no_connect "the host's $s" unix "$s"
done
no_connect "the host's $SOCK_RUN" unix "$SOCK_RUN"
blocked "$SOCK_RUN: $R"
