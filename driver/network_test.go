package driver

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/helper/uuid"
	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/bwrap-r/bwrap-r/internal/testnet"
)

func loopbackListener(t *testing.T) string {
	_, port, _ := net.SplitHostPort(testnet.Listen(t))
	return port
}

const connectScript = `if bash -c 'exec 3<>/dev/tcp/127.0.0.1/%s' 2>/dev/null; then echo connected; else echo refused; fi; grep -c : /proc/net/dev; echo end`

func TestHarnessNetworkNone(t *testing.T) {
	h, _ := newHarness(t, Config{})
	port := loopbackListener(t)
	script := strings.ReplaceAll(connectScript, "%s", port)
	none := newTask(t, h, "isolated", TaskConfig{Command: "/bin/sh", Args: []string{"-c", script}, Network: "none"})
	host := newTask(t, h, "hostnet", sh(script))
	start(t, h, none)
	start(t, h, host)
	waitExit(t, h, none.ID, 20*time.Second)
	waitExit(t, h, host.ID, 20*time.Second)
	waitLog(t, none, "stdout", "end")
	waitLog(t, host, "stdout", "end")
	if got := strings.Fields(logs(t, none, "stdout")); len(got) != 3 || got[0] != "refused" || got[1] != "1" {
		t.Errorf("network none: %q, want refused and only lo", got)
	}
	if got := strings.Fields(logs(t, host, "stdout")); len(got) == 0 || got[0] != "connected" {
		t.Errorf("host network: %q, want connected (the control)", got)
	}

	bad := newTask(t, h, "badnet", TaskConfig{Command: "/bin/true", Network: "bridge"})
	if _, _, err := h.StartTask(bad); err == nil || !strings.Contains(err.Error(), "network") {
		t.Fatalf("network = bridge in task config accepted: %v", err)
	}
}

func TestHarnessGroupNetworkDNSAndHosts(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("iproute2 not installed")
	}
	h, _ := newHarness(t, Config{})
	name := "bwrapr-" + uuid.Generate()[:8]
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	path := "/var/run/netns/" + name
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	task := newTaskWith(t, h, "grouped", sh("readlink /proc/self/ns/net; cat /etc/resolv.conf /etc/hosts"), func(task *drivers.TaskConfig) {
		task.NetworkIsolation = &drivers.NetworkIsolationSpec{
			Mode:        drivers.NetIsolationModeGroup,
			Path:        path,
			HostsConfig: &drivers.HostsConfig{Address: "127.0.0.9", Hostname: "alloc-host"},
		}
		task.DNS = &drivers.DNSConfig{Servers: []string{"127.0.0.53"}, Searches: []string{"svc.internal"}, Options: []string{"ndots:2"}}
	})
	start(t, h, task)
	waitExit(t, h, task.ID, 20*time.Second)
	out := logs(t, task, "stdout")
	for _, want := range []string{
		"net:[" + strconv.FormatUint(st.Ino, 10) + "]",
		"nameserver 127.0.0.53", "search svc.internal", "options ndots:2",
		"127.0.0.9 alloc-host",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("task output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(task.TaskDir().Dir + "/resolv.conf"); err != nil {
		t.Error(err)
	}
}
