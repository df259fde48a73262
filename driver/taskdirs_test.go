package driver

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"
)

// The client writes into secrets/ as root with writes that follow links: a
// task must not create, replace, remove or link anything there, and still
// reads what the client wrote.
func TestHarnessSecretsReadOnly(t *testing.T) {
	h, _ := newHarness(t, Config{})
	task := newTask(t, h, "secrets", sh(`cat /secrets/nomad_token; echo
echo x > /secrets/new 2>/dev/null && echo WROTE-NEW
echo x > /secrets/nomad_token 2>/dev/null && echo WROTE-TOKEN
rm -f /secrets/nomad_token 2>/dev/null; [ -e /secrets/nomad_token ] || echo REMOVED
ln -sf /etc/passwd /secrets/nomad_token 2>/dev/null && echo LINKED
ln -s /etc/passwd /secrets/vault_token 2>/dev/null && echo LINKED-NEW
mv /secrets/nomad_token /secrets/moved 2>/dev/null && echo MOVED
mkdir /secrets/d 2>/dev/null && echo MKDIR
chmod 777 /secrets 2>/dev/null && echo CHMOD
echo end`))
	secrets := task.TaskDir().SecretsDir
	// As the client's identity hook does before the task starts.
	token := filepath.Join(secrets, "nomad_token")
	if err := os.WriteFile(token, []byte("the-token"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := dirNames(t, secrets)
	start(t, h, task)
	waitExit(t, h, task.ID, 20*time.Second)
	waitLog(t, task, "stdout", "end")
	out := logs(t, task, "stdout")
	if !strings.HasPrefix(out, "the-token\n") {
		t.Errorf("the task did not read its token: %q", out)
	}
	for _, bad := range []string{"WROTE", "REMOVED", "LINKED", "MOVED", "MKDIR", "CHMOD"} {
		if strings.Contains(out, bad) {
			t.Errorf("the task changed /secrets: %q", out)
			break
		}
	}
	if fi, err := os.Lstat(token); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("nomad_token on the host: %v %v, want the regular file the client wrote", fi, err)
	} else if b, _ := os.ReadFile(token); string(b) != "the-token" {
		t.Errorf("nomad_token on the host now holds %q", b)
	}
	if after := dirNames(t, secrets); after != before {
		t.Errorf("secrets/ on the host held %q before the task, %q after", before, after)
	}
}

func dirNames(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return strings.Join(names, ",")
}

// prepareTaskDirs refuses a local/ that is a link to a host dir (or lies
// behind one), and the host dir keeps its owner and mode.
func TestHarnessPrepareTaskDirsRefusesLinks(t *testing.T) {
	h, _ := newHarness(t, Config{})
	host := t.TempDir()
	if err := os.Chmod(host, 0o755); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, task *drivers.TaskConfig, want string) {
		t.Helper()
		_, _, err := h.StartTask(task)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), task.TaskDir().LocalDir) {
			t.Errorf("want an error naming %s and %q, got %v", task.TaskDir().LocalDir, want, err)
		}
		if err == nil {
			_ = h.DestroyTask(task.ID, true)
		}
		fi, err := os.Stat(host)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 || fi.Mode().Perm() != 0o755 {
			t.Errorf("the host dir is now uid %d gid %d mode %v", st.Uid, st.Gid, fi.Mode().Perm())
		}
	}

	task := newTask(t, h, "linked", sh("true"))
	task.User = "nomad-80031"
	relink(t, task.TaskDir().LocalDir, host)
	check(t, task, "symbolic link")

	// A regular file in its place.
	task = newTask(t, h, "file", sh("true"))
	task.User = "nomad-80032"
	local := task.TaskDir().LocalDir
	if err := os.RemoveAll(local); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(local, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	check(t, task, "not a directory")
}

// relink replaces path with a symbolic link to target.
func relink(t *testing.T, path, target string) {
	t.Helper()
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}
