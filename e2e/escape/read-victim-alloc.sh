# Another allocation's shared dir: its logs (the victim prints its secret) and data.
[ -n "$VICTIM_ALLOC" ] || fail "VICTIM_ALLOC not set"
for f in "$VICTIM_ALLOC/alloc/logs/victim.stdout.0" "$VICTIM_ALLOC/alloc/data/secret.txt"; do
  if cat "$f" >/dev/null 2>&1; then escaped "read $f"; fi
done
if ls "$VICTIM_ALLOC/alloc" >/dev/null 2>&1; then escaped "listed $VICTIM_ALLOC/alloc"; fi
if ls /alloc/.. | grep -q "$VICTIM_ALLOC_ID"; then escaped "/alloc/.. lists the victim's allocation"; fi
blocked "$VICTIM_ALLOC: $(ls "$VICTIM_ALLOC" 2>&1)"
