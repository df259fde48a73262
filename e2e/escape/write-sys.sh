# /sys (and the cgroup files below it): no /sys at all in the sandbox.
if [ -e /sys ]; then
  for f in /sys/kernel/uevent_helper /sys/fs/cgroup/pids/cgroup.procs /sys/fs/cgroup/cgroup.procs /sys/power/state; do
    if [ -e "$f" ] && (: >> "$f") 2>/dev/null; then escaped "opened $f for writing"; fi
  done
  escaped "/sys exists in the sandbox (SECURITY.md: no /sys at all): $(ls /sys | head -5 | tr '\n' ' ')"
fi
blocked "no /sys in the sandbox"
