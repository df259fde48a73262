# Control: a task on the host's network reaches the host's abstract socket
# (documented in SECURITY.md), so abstract-socket's refusal comes from its
# network = "none" namespace and not from a wrong name or address.
r=$(try_connect abstract "$ABSTRACT") || fail "@$ABSTRACT: $r"
ok "@$ABSTRACT from the host's network: $r"
