# The client writes tokens into secrets/ as root with writes that follow
# links (nomad_token, vault_token, ...): a task that could plant a link there
# would have root create or truncate a host file at its next start.
for f in nomad_token vault_token nomad_default.jwt probe-new; do
  if ln -sf /etc/passwd "/secrets/$f" 2>/dev/null; then escaped "planted a link at /secrets/$f"; fi
  if echo x > "/secrets/$f" 2>/dev/null; then escaped "wrote /secrets/$f"; fi
done
if mkdir /secrets/probe-dir 2>/dev/null; then escaped "made a dir in /secrets"; fi
if mv /secrets/api.sock /secrets/moved 2>/dev/null; then escaped "renamed /secrets/api.sock"; fi
if chmod 0777 /secrets 2>/dev/null; then escaped "changed /secrets's mode"; fi
blocked "/secrets: $(echo x 2>&1 > /secrets/probe-new)"
