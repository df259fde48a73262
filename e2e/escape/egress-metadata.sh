# The metadata address of this agent's egress config: a loopback stand-in
# (PORT_META on 127.0.0.1, where the test listens), denied by the plugin's
# managed rules. Nothing here goes past loopback.
[ -n "$PORT_META" ] || fail "PORT_META not set"
no_connect "the metadata stand-in 127.0.0.1:$PORT_META" tcp 127.0.0.1 "$PORT_META"
blocked "127.0.0.1:$PORT_META: $R"
