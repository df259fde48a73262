# Prestart task of logfile-symlink: plant links where logmon (root) will
# write the main task's rotated log files.
cd /alloc/logs || exit 1
for f in main.stdout.0 main.stderr.0; do
  err=$(ln -s "$CANARY" "$f" 2>&1) || { echo "cannot plant $f: $err"; exit 1; }
done
ls -la /alloc/logs
echo "planted main.stdout.0 and main.stderr.0 -> $CANARY"
