# Replaces what its template reads or writes with a link to a host path
# (PLANT_AT -> TARGET). Nomad renders as root, so what it rendered is
# root's: a directory is moved aside (same parent), a file removed. Then,
# unless the link itself replaced the watched file, it rewrites the file
# the template watches so that the client renders again.
while [ ! -e /local/trigger ]; do sleep 0.2; done
if [ -d "$PLANT_AT" ]; then mv "$PLANT_AT" "$PLANT_AT.old"; else rm -f "$PLANT_AT"; fi
if ln -s "$TARGET" "$PLANT_AT"; then echo "planted $PLANT_AT -> $TARGET"; else echo "cannot plant at $PLANT_AT"; fi
if [ "$PLANT_AT" != /local/trigger ]; then
  sleep 1
  echo "rewritten by the task" > /local/trigger.new && mv -f /local/trigger.new /local/trigger && echo "trigger rewritten"
fi
echo done
exec sleep 3600
