# Another running task's /secrets.
[ -n "$VICTIM_DIR" ] || fail "VICTIM_DIR not set"
if cat "$VICTIM_DIR/secrets/token" >/dev/null 2>&1; then escaped "read $VICTIM_DIR/secrets/token"; fi
if ls "$VICTIM_DIR/secrets" >/dev/null 2>&1; then escaped "listed $VICTIM_DIR/secrets"; fi
blocked "$VICTIM_DIR/secrets/token: $(cat "$VICTIM_DIR/secrets/token" 2>&1)"
