# The agent's own HTTP API (PORT_API), denied in the egress config: a task
# that reached it could read jobs and their variables, or submit jobs.
[ -n "$PORT_API" ] || fail "PORT_API not set"
no_connect "the Nomad API 127.0.0.1:$PORT_API" tcp 127.0.0.1 "$PORT_API"
blocked "127.0.0.1:$PORT_API: $R"
