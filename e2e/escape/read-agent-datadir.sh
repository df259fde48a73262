# The agent's data dir, its client state db, the server's raft store, the
# plugin's root-only state dir and the agent's log (host paths passed in).
for d in "$AGENT_DIR" "$AGENT_DATA" "$PLUGIN_STATE"; do
  [ -n "$d" ] || fail "AGENT_DIR / AGENT_DATA / PLUGIN_STATE not set"
  if ls "$d" >/dev/null 2>&1; then escaped "listed $d: $(ls "$d" | head -5 | tr '\n' ' ')"; fi
  [ -e "$d" ] && escaped "$d is visible"
done
for f in "$AGENT_LOG" "$AGENT_STATE" "$AGENT_RAFT"; do
  [ -n "$f" ] || fail "AGENT_LOG / AGENT_STATE / AGENT_RAFT not set"
  if head -c 16 "$f" >/dev/null 2>&1; then escaped "read $f"; fi
  [ -e "$f" ] && escaped "$f is visible"
done
blocked "$AGENT_STATE: $(head -c 16 "$AGENT_STATE" 2>&1)"
