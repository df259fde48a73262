# Holds a UID with a per-task egress_deny rule, and tries the denied and an
# open listener every second; the host counts what reaches each.
echo "uid $(id -u)"
while :; do
  if try_connect tcp 127.0.0.1 "$PORT_TASKDENY" > /dev/null; then echo "$(date +%s) reached the denied port"; fi
  try_connect tcp 127.0.0.1 "$PORT_OPEN" > /dev/null
  sleep 1
done
