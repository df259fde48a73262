# The agent's config file (its host path is passed in AGENT_CONF).
[ -n "$AGENT_CONF" ] || fail "AGENT_CONF not set"
if cat "$AGENT_CONF" >/dev/null 2>&1; then escaped "read the agent config $AGENT_CONF"; fi
[ -e "$AGENT_CONF" ] && escaped "$AGENT_CONF is visible"
for f in /etc/nomad.d /etc/nomad /opt/nomad; do
  [ -e "$f" ] && escaped "$f is visible"
done
blocked "$AGENT_CONF: $(cat "$AGENT_CONF" 2>&1 | head -1)"
