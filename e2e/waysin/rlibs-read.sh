# Started with r_libs naming a directory outside the operator's
# r_library_roots (by "..", or a link below a root): can the task read it?
for d in $(echo "$R_LIBS" | tr ':' ' '); do
  if [ -r "$d/secret" ]; then escaped "read $d/secret: $(cat "$d/secret")"; fi
done
blocked "started, but no secret below R_LIBS=$R_LIBS"
