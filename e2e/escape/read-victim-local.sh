# Another running task's /local (its host task dir is passed in VICTIM_DIR).
[ -n "$VICTIM_DIR" ] || fail "VICTIM_DIR not set"
if cat "$VICTIM_DIR/local/secret.txt" >/dev/null 2>&1; then escaped "read $VICTIM_DIR/local/secret.txt"; fi
if ls "$VICTIM_DIR/local" >/dev/null 2>&1; then escaped "listed $VICTIM_DIR/local"; fi
if ls "$VICTIM_DIR" >/dev/null 2>&1; then escaped "listed $VICTIM_DIR"; fi
blocked "$VICTIM_DIR/local/secret.txt: $(cat "$VICTIM_DIR/local/secret.txt" 2>&1)"
