# A blocked probe target of the egress config (PORT_PROBE on 127.0.0.1).
[ -n "$PORT_PROBE" ] || fail "PORT_PROBE not set"
no_connect "127.0.0.1:$PORT_PROBE" tcp 127.0.0.1 "$PORT_PROBE"
blocked "127.0.0.1:$PORT_PROBE: $R"
