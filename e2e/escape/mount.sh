# mount(2) and umount(2), through util-linux and raw.
if mount -t tmpfs none /tmp 2>/dev/null; then escaped "mounted a tmpfs on /tmp"; fi
if mount --bind /local /usr/local 2>/dev/null; then escaped "bind-mounted /local on /usr/local"; fi
if umount /usr 2>/dev/null; then escaped "unmounted /usr"; fi
if umount -l /alloc 2>/dev/null; then escaped "lazily unmounted /alloc"; fi
refused "mount(2)" "$(sys 165 none /tmp tmpfs 0 0)" EPERM
refused "umount2(/usr, MNT_DETACH)" "$(sys 166 /usr 2)" EPERM
refused "open_tree(/usr, OPEN_TREE_CLONE)" "$(sys 428 0 /usr 0x80001)" EPERM
refused "fsopen(tmpfs)" "$(sys 430 tmpfs 0)" EPERM
blocked "mount, umount2, open_tree, fsopen refused (EPERM)"
