# /tmp and /dev/shm are tmpfs of tmp_size_mb (16 here): 1 GiB does not fit.
for d in /tmp /dev/shm; do
  if dd if=/dev/zero of="$d/fill" bs=1M count=1024 2>/dev/null; then escaped "wrote 1 GiB into $d"; fi
  size=$(stat -c %s "$d/fill")
  rm -f "$d/fill"
  [ "$size" -le 17825792 ] || escaped "wrote $size bytes into $d, more than tmp_size_mb = 16"
done
blocked "dd of 1 GiB fails in /tmp and /dev/shm after $size bytes ($(df -h /tmp | tail -1 | tr -s ' '))"
