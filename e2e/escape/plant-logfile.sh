# Prestart task of logfile-symlink: plant links where logmon (root) will
# write the main task's rotated log files.
cd /alloc/logs || exit 1
ln -s "$CANARY" main.stdout.0 && ln -s "$CANARY" main.stderr.0 || exit 1
ls -la /alloc/logs
echo "planted main.stdout.0 and main.stderr.0 -> $CANARY"
