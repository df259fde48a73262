# Signal 0 (is it there, may I signal it) to the agent and to another task's process.
for p in "$AGENT_PID" "$VICTIM_PID"; do
  [ -n "$p" ] || fail "AGENT_PID / VICTIM_PID not set"
  if kill -0 "$p" 2>/dev/null; then escaped "kill -0 $p succeeded"; fi
  refused "kill($p, 0)" "$(sys 62 "$p" 0)"
done
blocked "kill -0 $AGENT_PID (agent) and $VICTIM_PID (victim): $(kill -0 "$AGENT_PID" 2>&1)"
