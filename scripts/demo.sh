#!/usr/bin/env bash
# Starts a dev Nomad agent (127.0.0.1 only) with bwrap-r and runs the example
# Shiny app, then prints where it answers. `make demo-stop` stops the agent.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
nomad="$top/.cache/nomad/nomad"
run="$top/.cache/demo"
export NOMAD_ADDR=http://127.0.0.1:4646
mkdir -p "$run"

if [ -f "$run/agent.pid" ] && kill -0 "$(cat "$run/agent.pid")" 2>/dev/null; then
  echo "demo: agent already running (pid $(cat "$run/agent.pid"))"
else
  setsid "$nomad" agent -dev -config example/agent.hcl -plugin-dir "$top/bin/plugins" \
    >"$run/agent.log" 2>&1 </dev/null &
  echo $! >"$run/agent.pid"
  echo "demo: agent starting (log: $run/agent.log)"
fi

for _ in $(seq 60); do
  node=$("$nomad" node status -quiet 2>/dev/null | head -1 || true)
  if [ -n "$node" ] && "$nomad" node status -verbose "$node" 2>/dev/null | grep -Eq '^bwrap-r +true +true'; then break; fi
  sleep 1
done
node=$("$nomad" node status -quiet | head -1)
"$nomad" node status -verbose "$node" | grep -E '^bwrap-r ' || { echo "demo: bwrap-r not healthy"; tail -20 "$run/agent.log"; exit 1; }

"$nomad" job run -detach example/shiny.nomad.hcl >/dev/null
echo "demo: example/shiny.nomad.hcl submitted; waiting for the app"
for _ in $(seq 120); do
  # The CLI's Go templates read the API's JSON: no other tool needed.
  alloc=$("$nomad" job allocs -t '{{range .}}{{if eq .ClientStatus "running"}}{{.ID}}{{"\n"}}{{end}}{{end}}' shiny 2>/dev/null | head -1)
  if [ -n "$alloc" ]; then
    port=$("$nomad" alloc status -t '{{range .AllocatedResources.Shared.Ports}}{{if eq .Label "http"}}{{.HostIP}}:{{.Value}}{{end}}{{end}}' "$alloc" 2>/dev/null)
    if [ -n "$port" ] && curl -fsS -o /dev/null "http://$port/"; then
      echo
      echo "The Shiny app answers at http://$port/  (alloc ${alloc:0:8}, uid $(stat -c %u "/proc/$(pgrep -n -f "shiny::runApp")" 2>/dev/null || echo '?'))"
      echo "Logs: $nomad alloc logs -stderr ${alloc:0:8}    Stop: make demo-stop"
      exit 0
    fi
  fi
  sleep 1
done
echo "demo: the app did not answer in time"; tail -20 "$run/agent.log"; exit 1
