package driver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
