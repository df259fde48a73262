# First run: replace the tokens the client writes into /secrets with links
# to host paths (one missing, one an existing root file), exit non-zero so
# that the client restarts the task and writes its tokens again, as root.
if [ ! -e /local/planted ]; then
  touch /local/planted
  if rm -f /secrets/nomad_token /secrets/nomad_extra.jwt 2>/local/plant.err &&
     ln -s "$TARGET_NEW" /secrets/nomad_token 2>>/local/plant.err &&
     ln -s "$TARGET_OLD" /secrets/nomad_extra.jwt 2>>/local/plant.err; then
    echo "planted"
  else
    echo "cannot plant: $(cat /local/plant.err)"
  fi
  exit 3
fi
echo "restarted; /secrets: $(ls -l /secrets | tr '\n' ';')"
exec sleep 3600
