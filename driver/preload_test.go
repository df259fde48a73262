package driver

import (
	"os"
	"testing"
)

// The node says whether spares run bwrap with the launcher preloaded: by
// default where the build has it (make test's: BWRAP_R_WANT_PRELOAD), and
// never with preload_launcher = false.
func TestPreloadLauncherOption(t *testing.T) {
	needRoot(t)
	off := false
	for _, c := range []struct {
		name string
		set  *bool
		want bool
	}{
		{"default", nil, os.Getenv("BWRAP_R_WANT_PRELOAD") != ""},
		{"off", &off, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDriver(t, Config{BwrapPath: "/usr/bin/bwrap", PreloadLauncher: c.set})
			v, ok := d.buildFingerprint().Attributes["driver.bwrap-r.launcher.preloaded"].GetBool()
			if !ok || v != c.want {
				t.Errorf("driver.bwrap-r.launcher.preloaded = %v (set: %v), want %v", v, ok, c.want)
			}
		})
	}
	// Back to the default for the tests after this one.
	newDriver(t, Config{BwrapPath: "/usr/bin/bwrap"})
}
