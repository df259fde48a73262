package rversion

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeR writes an R front end that prints its version, as rig's would.
func fakeR(t *testing.T, path, version string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(filepath.Dir(filepath.Dir(path)), "lib", "R")
	script := "#!/bin/sh\ncase \"$1\" in\n--version) echo \"R version " + version + " (fake)\";;\nRHOME) echo " + home + ";;\n*) echo \"fake R " + version + "\";;\nesac\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// rigTree builds a rig-shaped root with the given installs, plus `current`.
func rigTree(t *testing.T, versions ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, v := range versions {
		fakeR(t, filepath.Join(root, v, "bin", "R"), v)
	}
	if len(versions) > 0 {
		if err := os.Symlink(versions[0], filepath.Join(root, "current")); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestDiscoverOrdersNumericallyAndSkipsCurrent(t *testing.T) {
	root := rigTree(t, "4.5.9", "4.5.10", "4.4.2", "4.10.0", "devel")
	// Not installs: no bin/R, a stray name, a symlinked version.
	os.MkdirAll(filepath.Join(root, "4.3.0", "bin"), 0o755)
	fakeR(t, filepath.Join(root, "notes", "bin", "R"), "9.9.9")
	os.Symlink(filepath.Join(root, "4.4.2"), filepath.Join(root, "4.4.9"))
	c, err := Discover(root, "", filepath.Join(root, "4.4.2", "bin", "R"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"4.4.2", "4.5.9", "4.5.10", "4.10.0", "devel"}
	if got := c.Installed(); !reflect.DeepEqual(got, want) {
		t.Fatalf("installed %v, want %v", got, want)
	}
	if c.Default == nil || c.Default.Version != "4.4.2" || c.Default.Root != filepath.Join(root, "4.4.2") {
		t.Fatalf("default %+v", c.Default)
	}
}

func TestResolve(t *testing.T) {
	root := rigTree(t, "4.3.3", "4.4.1", "4.4.2", "4.5.0", "4.5.10", "4.5.9", "devel")
	links := t.TempDir()
	os.Symlink(filepath.Join(root, "4.5.10", "bin", "R"), filepath.Join(links, "R-release"))
	os.Symlink(filepath.Join(root, "4.4.2", "bin", "R"), filepath.Join(links, "R-oldrel"))
	c, err := Discover(root, links, filepath.Join(root, "4.3.3", "bin", "R"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		req   string
		match Match
		want  string // version, or "" for an error
		why   string
	}{
		{"4.4.1", Minor, "4.4.1", "exact match"},
		{"4.4.1", Exact, "4.4.1", "exact match"},
		{"4.4", Minor, "4.4.2", "minor match"},
		{"4.4.9", Minor, "4.4.2", "minor match"},
		{"4.4.9", Exact, "", ""},
		{"4.5", Minor, "4.5.10", "minor match"},
		{"4", Minor, "4.5.10", "minor match"},
		{"4.6", Minor, "", ""},
		{"4.6", Nearest, "4.5.10", "nearest match"},
		{"4.2.1", Nearest, "4.3.3", "nearest match"},
		{"3.6", Nearest, "4.3.3", "nearest match"},
		{"release", Minor, "4.5.10", "rig's release"},
		{"oldrel", Exact, "4.4.2", "rig's oldrel"},
		{"devel", Minor, "devel", "channel"},
		{"next", Minor, "", ""},
		{"", Minor, "4.3.3", "default R"},
	}
	for _, tc := range cases {
		in, why, err := c.Resolve(tc.req, tc.match)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%q %s: got %s, want an error", tc.req, tc.match, in.Version)
				continue
			}
			for _, v := range []string{"4.3.3", "4.4.1", "4.4.2", "4.5.0", "4.5.9", "4.5.10", "devel"} {
				if !strings.Contains(err.Error(), v) {
					t.Errorf("%q: error does not list %s: %v", tc.req, v, err)
				}
			}
			continue
		}
		if err != nil {
			t.Errorf("%q %s: %v", tc.req, tc.match, err)
			continue
		}
		if in.Version != tc.want || !strings.Contains(why, tc.why) {
			t.Errorf("%q %s: got %s (%s), want %s (%s)", tc.req, tc.match, in.Version, why, tc.want, tc.why)
		}
	}
}

func TestInvalidRequestsNeverReachAPath(t *testing.T) {
	root := rigTree(t, "4.4.1")
	c, err := Discover(root, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []string{"../4.4", "4.*", "4.4.1/../../etc", " 4.4", "4.4.1.2", "current", "4..4", "/opt/R/4.4.1", "R-release"} {
		if _, _, err := c.Resolve(req, Nearest); err == nil || !strings.Contains(err.Error(), "invalid r_version") {
			t.Errorf("%q: want an invalid-version error, got %v", req, err)
		}
	}
}

func TestNothingInstalled(t *testing.T) {
	c, err := Discover(filepath.Join(t.TempDir(), "no-such-root"), "", "")
	t.Setenv("PATH", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Discover(filepath.Join(t.TempDir(), "no-such-root"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(c2.Installed()) != 0 || c2.Default != nil {
		t.Fatalf("found R where there is none: %v %+v", c2.Installed(), c2.Default)
	}
	_ = c
	_, _, err = c2.Resolve("4.4", Nearest)
	if err == nil || !strings.Contains(err.Error(), "none") {
		t.Fatalf("want an error saying none is installed, got %v", err)
	}
	if _, _, err := c2.Resolve("", Minor); err == nil || !strings.Contains(err.Error(), "no R found") {
		t.Fatalf("default with no R: %v", err)
	}
}

// The distribution's R (no rig install of its version) is listed with the
// rig installs and serves requests for its version like any of them.
func TestDistributionRIsAVersion(t *testing.T) {
	root := rigTree(t, "4.1.3", "4.4.1")
	system := filepath.Join(t.TempDir(), "system-r", "bin", "R")
	fakeR(t, system, "4.2.2")
	c, err := Discover(root, "", system)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Installed(), ","); got != "4.1.3,4.2.2,4.4.1" {
		t.Fatalf("installed %s, want the default R's 4.2.2 among the rig versions", got)
	}
	in, why, err := c.Resolve("4.2", Minor)
	if err != nil || in.Version != "4.2.2" || in.Bin != filepath.Dir(system) || !strings.Contains(why, in.Where()) {
		t.Fatalf("4.2: %+v %q %v", in, why, err)
	}
	// A default that is one of the rig installs is not listed twice.
	c, err = Discover(root, "", filepath.Join(root, "4.4.1", "bin", "R"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Installed(), ","); got != "4.1.3,4.4.1" {
		t.Fatalf("installed %s", got)
	}
}

func TestConfiguredDefaultMustExist(t *testing.T) {
	if _, err := Discover(t.TempDir(), "", "/nonexistent/bin/R"); err == nil {
		t.Fatal("a missing default_r was accepted")
	}
}

func TestCompare(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{{"4.5.10", "4.5.9", 1}, {"4.5.9", "4.5.10", -1}, {"4.10.0", "4.9.9", 1}, {"4.4", "4.4.0", 0}} {
		if got := Compare(c.a, c.b); got != c.want {
			t.Errorf("Compare(%s, %s) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
