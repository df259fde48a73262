package bwrap

import (
	"reflect"
	"strings"
	"testing"
)

func TestArgv(t *testing.T) {
	base := []string{"--cap-drop", "ALL", "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
		"--uid", "1000", "--gid", "1001", "--new-session"}
	cases := []struct {
		name string
		spec Spec
		want []string // after base, or the error text
		err  string
	}{
		{
			name: "minimal",
			spec: Spec{Command: "/bin/true", UID: 1000, GID: 1001},
			want: []string{"--remount-ro", "/", "--clearenv", "--", "/bin/true"},
		},
		{
			name: "everything",
			spec: Spec{
				Command: "Rscript", Args: []string{"-e", "cat(1)"},
				Env: map[string]string{"B": "2", "A": "1 2"},
				UID: 1000, GID: 1001, Hostname: "web", Dir: "/local", Network: NetworkNone,
				Mounts: []Mount{
					{Kind: ROBind, Source: "/usr", Dest: "/usr"},
					{Kind: ROBind, Source: "/etc/hosts", Dest: "/etc/hosts", Optional: true},
					{Kind: Bind, Source: "/srv/t/local", Dest: "/local"},
					{Kind: DevBind, Source: "/dev/null", Dest: "/dev/null"},
					{Kind: Tmpfs, Dest: "/tmp", Size: 1 << 20, Perms: 0o1777},
					{Kind: Procfs, Dest: "/proc"},
					{Kind: Dir, Dest: "/x", Perms: 0o700},
					{Kind: Symlink, Source: "usr/bin", Dest: "/bin"},
					{Kind: RemountRO, Dest: "/local"},
				},
				InfoFD: 3, StatusFD: 4, SeccompFD: 5,
			},
			want: []string{"--unshare-net", "--hostname", "web",
				"--ro-bind", "/usr", "/usr",
				"--ro-bind-try", "/etc/hosts", "/etc/hosts",
				"--bind", "/srv/t/local", "/local",
				"--dev-bind", "/dev/null", "/dev/null",
				"--perms", "1777", "--size", "1048576", "--tmpfs", "/tmp",
				"--proc", "/proc",
				"--perms", "0700", "--dir", "/x",
				"--symlink", "usr/bin", "/bin",
				"--remount-ro", "/local",
				"--remount-ro", "/", "--clearenv", "--setenv", "A", "1 2", "--setenv", "B", "2",
				"--chdir", "/local", "--info-fd", "3", "--json-status-fd", "4", "--seccomp", "5",
				"--", "Rscript", "-e", "cat(1)"},
		},
		{name: "dash command is not an option", spec: Spec{Command: "--bind", UID: 1000, GID: 1001},
			want: []string{"--remount-ro", "/", "--clearenv", "--", "--bind"}},
		{name: "no command", spec: Spec{UID: 1000, GID: 1001}, err: "no command"},
		{name: "root uid", spec: Spec{Command: "x", UID: 0, GID: 1001}, err: "uid or gid 0"},
		{name: "root gid", spec: Spec{Command: "x", UID: 1000, GID: 0}, err: "uid or gid 0"},
		{name: "relative dest", spec: Spec{Command: "x", UID: 1000, GID: 1001,
			Mounts: []Mount{{Kind: Bind, Source: "/a", Dest: "local"}}}, err: "clean absolute"},
		{name: "dotdot dest", spec: Spec{Command: "x", UID: 1000, GID: 1001,
			Mounts: []Mount{{Kind: Bind, Source: "/a", Dest: "/local/../etc"}}}, err: "clean absolute"},
		{name: "relative source", spec: Spec{Command: "x", UID: 1000, GID: 1001,
			Mounts: []Mount{{Kind: Bind, Source: "a", Dest: "/a"}}}, err: "must be absolute"},
		{name: "bad env name", spec: Spec{Command: "x", UID: 1000, GID: 1001,
			Env: map[string]string{"A=B": "c"}}, err: "invalid environment"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.spec.Argv()
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("want error containing %q, got %v", c.err, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := append(append([]string{}, base...), c.want...)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("argv\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestHostPath(t *testing.T) {
	m := []Mount{
		{Kind: ROBind, Source: "/usr", Dest: "/usr"},
		{Kind: Symlink, Source: "usr/bin", Dest: "/bin"},
		{Kind: Bind, Source: "/data/alloc/web/local", Dest: "/local"},
		{Kind: Tmpfs, Dest: "/tmp"},
	}
	cases := map[string]string{
		"/usr/bin/env":     "/usr/bin/env",
		"/bin/sh":          "/usr/bin/sh",
		"/local/app/run.R": "/data/alloc/web/local/app/run.R",
		"/local/../etc":    "",
		"/tmp/x":           "",
		"/etc/passwd":      "",
	}
	for in, want := range cases {
		got, ok := HostPath(m, in)
		if want == "" {
			if ok {
				t.Errorf("%s: want unmapped, got %s", in, got)
			}
			continue
		}
		if !ok || got != want {
			t.Errorf("%s: got %q %v, want %q", in, got, ok, want)
		}
	}
}
