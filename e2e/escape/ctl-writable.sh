# Control: what a task may write is writable (the write probes' refusals are
# not a broken sandbox). /secrets is read-only: the client writes there as
# root.
for d in /tmp /dev/shm /local /alloc/data; do
  echo x > "$d/ctl" || fail "cannot write $d"
done
ok "wrote /tmp, /dev/shm, /local, /alloc/data"
