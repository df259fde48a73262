# The task's own egress_deny (PORT_TASKDENY) on top of the plugin's rules;
# the control ctl-task-deny-other shows the port is reachable for other tasks.
[ -n "$PORT_TASKDENY" ] || fail "PORT_TASKDENY not set"
no_connect "127.0.0.1:$PORT_TASKDENY despite egress_deny" tcp 127.0.0.1 "$PORT_TASKDENY"
blocked "127.0.0.1:$PORT_TASKDENY: $R"
