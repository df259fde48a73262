# The Task API socket: an HTTP endpoint of the agent in /secrets. Every two
# seconds, with the task's workload identity and without, and the agent's
# TCP address (denied by the egress rules) for comparison; results go to
# /local/api.log, which the host reads.
i=0
while :; do
  i=$((i + 1))
  with=$(curl -s -i --max-time 5 --unix-socket /secrets/api.sock -H "X-Nomad-Token: $NOMAD_TOKEN" http://localhost/v1/agent/self 2>&1 | head -1 | tr -d '\r')
  without=$(curl -s -i --max-time 5 --unix-socket /secrets/api.sock http://localhost/v1/agent/self 2>&1 | head -1 | tr -d '\r')
  tcp=$(try_connect tcp 127.0.0.1 "$PORT_API")
  echo "$(date +%s) round=$i token=[$with] anonymous=[$without] tcp=[$tcp] sock=$(test -S /secrets/api.sock && echo present || echo absent)" >> /local/api.log
  sleep 2
done
