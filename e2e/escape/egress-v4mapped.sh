# The metadata stand-in through an IPv6 socket and an IPv4-mapped address
# (::ffff:127.0.0.1): on the wire it is IPv4 and the rule must still match.
[ -n "$PORT_META" ] || fail "PORT_META not set"
no_connect "[::ffff:127.0.0.1]:$PORT_META" tcp6 ::ffff:127.0.0.1 "$PORT_META"
blocked "[::ffff:127.0.0.1]:$PORT_META: $R"
