# Prestart task of logfifo-symlink: replace the main task's log FIFOs with
# links to a host file (CANARY). logmon (root) and the plugin (root) open
# these paths for the main task after this task has ended.
cd /alloc/logs || exit 1
rm -f .main.stdout.fifo .main.stderr.fifo 2>/dev/null
for f in .main.stdout.fifo .main.stderr.fifo; do
  err=$(ln -s "$CANARY" "$f" 2>&1) || { echo "cannot plant $f: $err"; exit 1; }
done
ls -la /alloc/logs
echo "planted .main.stdout.fifo and .main.stderr.fifo -> $CANARY"
