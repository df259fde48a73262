# Control: PORT_TASKDENY is reachable for a task without egress_deny.
r=$(try_connect tcp 127.0.0.1 "$PORT_TASKDENY") || fail "127.0.0.1:$PORT_TASKDENY: $r"
ok "127.0.0.1:$PORT_TASKDENY: $r"
