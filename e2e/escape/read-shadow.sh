# The node's secrets in /etc and /root: not in the sandbox, not readable.
for f in /etc/shadow /etc/gshadow /etc/shadow- /etc/sudoers /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_rsa_key /root/.ssh/authorized_keys; do
  if cat "$f" >/dev/null 2>&1; then escaped "read $f"; fi
  if [ -e "$f" ] || [ -L "$f" ]; then escaped "$f is visible in the sandbox (SECURITY.md: it does not exist)"; fi
done
blocked "no /etc/shadow, gshadow, sudoers, ssh host keys or /root in the sandbox"
