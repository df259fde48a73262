# Control: a loopback port the egress rules do not deny (PORT_OPEN) is
# reachable, so the egress probes' refusals come from the rules.
r=$(try_connect tcp 127.0.0.1 "$PORT_OPEN") || fail "127.0.0.1:$PORT_OPEN: $r"
ok "127.0.0.1:$PORT_OPEN: $r"
