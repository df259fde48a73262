# The agent runs with BWRAP_R_PROBE_AGENT_SECRET in its environment: no task may see it.
if env | grep -q '^BWRAP_R_PROBE_AGENT_SECRET='; then escaped "the agent's environment reached the task"; fi
for e in /proc/[0-9]*/environ; do
  if grep -aq BWRAP_R_PROBE_AGENT_SECRET "$e" 2>/dev/null; then escaped "$e holds the agent's variable"; fi
done
blocked "no BWRAP_R_PROBE_AGENT_SECRET in the task's or any visible process's environment"
