package driver

import (
	"io"
	"os"
	"path/filepath"

	"github.com/bwrap-r/bwrap-r/preflight"
)

// installSelf copies this executable to <state_dir>/bin, where task UIDs can
// reach it whatever the permissions of the plugin_dir. The state dir is
// 0711: nobody but root can list it, and its status files are 0600.
func installSelf(stateDir, self string) (string, error) {
	if err := os.MkdirAll(stateDir, 0o711); err != nil {
		return "", err
	}
	if err := os.Chmod(stateDir, 0o711); err != nil {
		return "", err
	}
	binDir := filepath.Join(stateDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(binDir, 0o755); err != nil {
		return "", err
	}
	dst := filepath.Join(binDir, "bwrap-r")
	src, err := os.Open(self)
	if err != nil {
		return "", err
	}
	defer src.Close()
	si, err := src.Stat()
	if err != nil {
		return "", err
	}
	if di, err := os.Stat(dst); err == nil && di.Size() == si.Size() && !di.ModTime().Before(si.ModTime()) {
		return dst, nil
	}
	tmp, err := os.CreateTemp(binDir, ".bwrap-r-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	// rename: a running task keeps the inode it has bound.
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", err
	}
	return dst, nil
}

func (d *Driver) installSelf(stateDir string) {
	self := preflight.SelfExecutable()
	p, err := installSelf(stateDir, self)
	if err != nil {
		d.logger.Warn("copying bwrap-r into the state dir: the preflight's egress probe will not work", "error", err)
		p = ""
	}
	d.mu.Lock()
	d.selfBinary = p
	d.mu.Unlock()
}
