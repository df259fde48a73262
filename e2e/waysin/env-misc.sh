# Plants what an exec path that used the task's environment would run: a
# "true" first on the job's PATH, and the rc file that BASH_ENV and ENV name
# (by its host path). Each records who ran it; only root on the host can
# create a file in WAYSIN_MARKER_DIR. The job's LD_DEBUG is for the exec
# path, not for this shell (with its output path missing here, the loader
# would write to stdout).
unset LD_DEBUG LD_DEBUG_OUTPUT
mkdir -p /local/bin
cat > /local/bin/true <<'X'
#!/bin/sh
unset LD_DEBUG LD_DEBUG_OUTPUT
echo "planted-true uid=$(id -u) $(grep '^Seccomp:' /proc/self/status | tr -d '\t')" >> /local/waysin.rec
printf "" 2>/dev/null > "$WAYSIN_MARKER_DIR/planted-true-$$"
exit 0
X
cat > /local/rc.sh <<'X'
unset LD_DEBUG LD_DEBUG_OUTPUT
echo "rc uid=$(id -u) $(grep '^Seccomp:' /proc/self/status | tr -d '\t')" >> "$WAYSIN_REC_HOST" 2>/dev/null || echo "rc uid=$(id -u)" >> /local/waysin.rec
printf "" 2>/dev/null > "$WAYSIN_MARKER_DIR/rc-$$"
X
chmod 0755 /local/bin/true /local/rc.sh
echo "planted"
exec sleep 3600
