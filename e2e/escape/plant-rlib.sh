# Prestart task of rlib-symlink: /alloc/lib becomes a link to a host dir
# (CANARY_DIR); the main task asks for r_lib_writable = "/alloc/lib/pkgs",
# which the plugin (root) creates and chowns to the main task's UID.
ln -s "$CANARY_DIR" /alloc/lib || exit 1
ls -la /alloc
echo "planted /alloc/lib -> $CANARY_DIR"
