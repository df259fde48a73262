# Poststop task: what a task of the allocation can read in the main task's logs.
for f in /alloc/logs/main.stdout.0 /alloc/logs/main.stderr.0; do
  echo "== $f"
  cat "$f" 2>&1
done
