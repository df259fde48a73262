# A device node for the host's disk (BLOCK_MAJMIN) in every writable place.
[ -n "$BLOCK_MAJMIN" ] || fail "BLOCK_MAJMIN not set"
maj=$(echo "$BLOCK_MAJMIN" | cut -d: -f1)
min=$(echo "$BLOCK_MAJMIN" | cut -d: -f2)
for d in /tmp /local /secrets /alloc/data /dev/shm; do
  if mknod "$d/disk" b "$maj" "$min" 2>/dev/null; then
    if head -c 512 "$d/disk" >/dev/null 2>&1; then escaped "made and read block device $maj:$min at $d/disk"; fi
    escaped "made block device node $d/disk ($maj:$min)"
  fi
  if mknod "$d/mem" c 1 1 2>/dev/null; then escaped "made /dev/mem's node at $d/mem"; fi
done
blocked "mknod: $(mknod /tmp/disk b "$maj" "$min" 2>&1)"
