# The Task API (/secrets/api.sock) reaches the agent's whole HTTP API, which
# the egress rules deny: with managed rules it is hidden (task_api = "auto").
[ -e /secrets/api.sock ] || fail "no /secrets/api.sock: the client made no Task API socket, the probe proves nothing"
no_connect "the Task API /secrets/api.sock" unix /secrets/api.sock
blocked "/secrets/api.sock: $R"
