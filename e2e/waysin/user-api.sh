# Runs as the job's user. A task identity is covered by the node's egress
# rules; this one, if it runs, tries the agent's API, which they deny.
echo "running as uid $(id -u)"
if R=$(try_connect tcp 127.0.0.1 "$PORT_API"); then
  escaped "uid $(id -u) connected to the Nomad API 127.0.0.1:$PORT_API (the egress rules deny it to task identities)"
fi
blocked "uid $(id -u) ran, but 127.0.0.1:$PORT_API: $R"
