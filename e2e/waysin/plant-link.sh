# A prestart task: plants a link at LINK (in the allocation's shared dir)
# to TARGET, a host path, where the client will later write as root.
if ln -s "$TARGET" "$LINK" 2>/tmp/err; then echo "planted $LINK -> $TARGET"; else echo "cannot plant: $(cat /tmp/err)"; fi
