package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// templateEscapeJob: the task replaces its rendered template with a link to
// a host file; when the variable changes, Nomad's template runner (root, on
// the host) renders again, and must not write through the link.
const templateEscapeJob = `job %[1]q {
  type = "service"
  group "g" {
` + runOnce + `    task "t" {
      driver = "bwrap-r"
      config {
        command = "/bin/sh"
        args    = ["-c", "while [ ! -s /local/conf ]; do sleep 0.2; done; rm -f /local/conf; ln -s %[2]s /local/conf && echo planted; exec sleep 300"]
      }
      template {
        destination = "local/conf"
        data        = "{{ with nomadVar \"nomad/jobs/%[1]s\" }}{{ .v }}{{ end }}"
        change_mode = "noop"
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
`

// TestEscapeTemplateSymlink: a link a task plants where its template is
// rendered does not let the re-render (as root, on the host) write a host
// file.
func TestEscapeTemplateSymlink(t *testing.T) {
	a := sharedAgent(t)
	const job = "template-escape"
	canary := fmt.Sprintf("/tmp/bwrap-r-canary-%s-template", escRand(t, 6))
	const content = "canary: only root writes this\n"
	if err := os.WriteFile(canary, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(canary) })
	if out, err := a.nomad("var", "put", "-force", "nomad/jobs/"+job, "v=first-render"); err != nil {
		t.Fatalf("nomad var put: %v\n%s", err, out)
	}
	t.Cleanup(func() { a.nomad("var", "purge", "nomad/jobs/"+job) })
	a.runJob(t, writeJob(t, job, fmt.Sprintf(templateEscapeJob, job, canary)), job)
	al := a.waitAlloc(t, job, time.Minute, "running", func(al *allocation) bool {
		ts := al.TaskStates["t"]
		return terminal(al) || (ts != nil && ts.State == "running")
	})
	if !eventually(30*time.Second, 250*time.Millisecond, func() bool {
		logs, _ := a.nomad("alloc", "logs", al.ID, "t")
		return strings.Contains(logs, "planted")
	}) {
		t.Fatalf("the task did not plant its link:\n%s", al)
	}

	if out, err := a.nomad("var", "put", "-force", "nomad/jobs/"+job, "v=second-render"); err != nil {
		t.Fatalf("nomad var put: %v\n%s", err, out)
	}
	// The runner renders again within seconds: to a new file renamed over
	// the link (the link is replaced, not followed), or it refuses (the
	// host's view of local/ follows no link while bwrap-r holds the task).
	allocDir := escFind(a.dir, al.ID, true, 3)
	if allocDir == "" {
		t.Fatalf("no alloc dir %s below %s", al.ID, a.dir)
	}
	conf := filepath.Join(allocDir, "t", "local", "conf")
	var events, seen string
	rendered := eventually(30*time.Second, 500*time.Millisecond, func() bool {
		var cur allocation
		if a.get("/v1/allocation/"+al.ID, &cur) == nil {
			events = cur.String()
		}
		if b, _ := os.ReadFile(canary); string(b) != content {
			return true
		}
		if fi, err := os.Lstat(conf); err == nil && fi.Mode().IsRegular() {
			b, _ := os.ReadFile(conf)
			seen = string(b)
			return strings.Contains(seen, "second-render")
		}
		// The link guard: the renderer, reading the old file to compare
		// it, meets the link and gets ELOOP (in the agent's log).
		if log, _ := os.ReadFile(a.log); strings.Contains(string(log), "local/conf: too many levels of symbolic links") {
			seen = "refused: the render met the link (ELOOP)"
			return true
		}
		return strings.Contains(events, "emplate")
	})
	t.Logf("host %s after the change: %q (re-rendered or refused: %v)", conf, seen, rendered)
	if !rendered {
		t.Fatalf("no second render and no refusal 30 s after the variable changed: the probe proved nothing\n%s", events)
	}
	b, err := os.ReadFile(canary)
	if err != nil {
		t.Fatalf("the canary %s: %v", canary, err)
	}
	t.Logf("after the re-render: canary %q; allocation:\n%s", b, events)
	if string(b) != content {
		t.Fatalf("ESCAPED: the template re-render wrote the host file %s through the planted link: %q", canary, b)
	}
}
