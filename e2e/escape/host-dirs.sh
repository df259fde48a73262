# Host directories that hold other users' and services' data.
for d in /root /home /var /run /opt /srv /mnt /media /boot /run/bwrap-r /var/lib/nomad /var/run/docker.sock; do
  if [ -e "$d" ] || [ -L "$d" ]; then escaped "$d is visible in the sandbox: $(ls "$d" 2>&1 | head -3 | tr '\n' ' ')"; fi
done
blocked "none of /root /home /var /run /opt /srv /mnt /media /boot exists"
