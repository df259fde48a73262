package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostNet is what Nomad's bridge networking (its CNI plugins) changes on the
// host and leaves behind when the agent stops: the bridge, iptables chains,
// the CNI state dir, ip_forward.
type hostNet struct {
	links      map[string]bool
	netns      map[string]bool
	nftTables  map[string]bool
	chains     map[string]bool // "command table chain" of iptables
	ipForward  string
	cniStateIn bool // /var/lib/cni existed
}

const bridgeName = "nomad"

func snapshotHostNet(t *testing.T) *hostNet {
	t.Helper()
	h := &hostNet{links: map[string]bool{}, netns: map[string]bool{}, nftTables: map[string]bool{}, chains: map[string]bool{}}
	for _, l := range hostLinks(t) {
		h.links[l] = true
	}
	for _, n := range netnsNames() {
		h.netns[n] = true
	}
	for _, tb := range nftTables(t) {
		h.nftTables[tb] = true
	}
	for _, c := range iptablesChains() {
		h.chains[c] = true
	}
	b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	h.ipForward = strings.TrimSpace(string(b))
	_, err := os.Stat("/var/lib/cni")
	h.cniStateIn = err == nil
	return h
}

func hostLinks(t *testing.T) []string {
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatalf("ip link: %v", err)
	}
	var links []string
	for _, l := range strings.Split(string(out), "\n") {
		// 3: nomad: <...> or 5: veth1234@if2: <...>
		if f := strings.Fields(l); len(f) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			links = append(links, name)
		}
	}
	return links
}

func netnsNames() []string {
	entries, _ := os.ReadDir("/var/run/netns")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func nftTables(t *testing.T) []string {
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		t.Fatalf("nft list tables: %v", err)
	}
	var tables []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.TrimSpace(strings.TrimPrefix(l, "table ")); l != "" {
			tables = append(tables, l)
		}
	}
	return tables
}

// iptablesCmds are the iptables front ends whose tables Nomad's CNI
// plugins change.
var iptablesCmds = []string{"iptables", "ip6tables"}

// iptablesChains lists the "command table chain" triples of the filter and
// nat tables.
func iptablesChains() []string {
	var chains []string
	for _, ipt := range iptablesCmds {
		for _, table := range []string{"filter", "nat"} {
			out, _ := exec.Command(ipt, "-t", table, "-S").Output()
			for _, l := range strings.Split(string(out), "\n") {
				if f := splitRule(l); len(f) > 1 && (f[0] == "-N" || f[0] == "-P") {
					chains = append(chains, ipt+" "+table+" "+f[1])
				}
			}
		}
	}
	return chains
}

// splitRule splits a line of iptables -S into arguments, undoing its double
// quotes (comments).
func splitRule(line string) []string {
	var args []string
	var cur strings.Builder
	in, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && quoted && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			quoted, in = !quoted, true
		case c == ' ' && !quoted:
			if in {
				args = append(args, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		args = append(args, cur.String())
	}
	return args
}

// iptablesNFTTables are the nft tables iptables-nft makes on first use.
var iptablesNFTTables = map[string]bool{"ip filter": true, "ip nat": true, "ip6 filter": true, "ip6 nat": true}

// restore removes what bridge networking added since the snapshot: new
// netns, the nomad bridge and veths, the new iptables chains and the rules
// jumping to them, iptables' nft tables that were not there, the CNI state
// dir, and resets ip_forward. It logs what it removed and fails the test
// for what it could not.
func (h *hostNet) restore(t *testing.T) {
	t.Helper()
	var removed []string
	for _, n := range netnsNames() {
		if !h.netns[n] {
			removed = append(removed, "netns "+n)
			exec.Command("ip", "netns", "delete", n).Run()
		}
	}
	for _, l := range hostLinks(t) {
		if !h.links[l] && (l == bridgeName || strings.HasPrefix(l, "veth")) {
			removed = append(removed, "link "+l)
			exec.Command("ip", "link", "delete", l).Run()
		}
	}
	// Rules first (those jumping to new chains), then the chains.
	for _, ipt := range iptablesCmds {
		for _, table := range []string{"filter", "nat"} {
			out, _ := exec.Command(ipt, "-t", table, "-S").Output()
			lines := strings.Split(string(out), "\n")
			isNew := map[string]bool{}
			var newChains []string
			for _, l := range lines {
				if f := splitRule(l); len(f) > 1 && f[0] == "-N" && !h.chains[ipt+" "+table+" "+f[1]] {
					isNew[f[1]] = true
					newChains = append(newChains, f[1])
				}
			}
			for _, l := range lines {
				f := splitRule(l)
				// -A CHAIN ... -j TARGET, in a chain that stays
				if len(f) < 2 || f[0] != "-A" || isNew[f[1]] {
					continue
				}
				for i := 0; i+1 < len(f); i++ {
					if (f[i] == "-j" || f[i] == "-g") && isNew[f[i+1]] {
						removed = append(removed, ipt+" -t "+table+" "+l)
						if out, err := exec.Command(ipt, append([]string{"-t", table, "-D"}, f[1:]...)...).CombinedOutput(); err != nil {
							t.Errorf("%s -t %s -D %s: %v: %s", ipt, table, strings.Join(f[1:], " "), err, out)
						}
						break
					}
				}
			}
			for _, c := range newChains {
				exec.Command(ipt, "-t", table, "-F", c).Run()
			}
			for _, c := range newChains {
				removed = append(removed, ipt+" -t "+table+" chain "+c)
				if out, err := exec.Command(ipt, "-t", table, "-X", c).CombinedOutput(); err != nil {
					t.Errorf("%s -t %s -X %s: %v: %s", ipt, table, c, err, out)
				}
			}
		}
	}
	for _, tb := range nftTables(t) {
		if !h.nftTables[tb] && iptablesNFTTables[tb] {
			removed = append(removed, "nft table "+tb)
			f := strings.Fields(tb)
			if out, err := exec.Command("nft", "delete", "table", f[0], f[1]).CombinedOutput(); err != nil {
				t.Errorf("nft delete table %s: %v: %s", tb, err, out)
			}
		}
	}
	if !h.cniStateIn {
		if _, err := os.Stat("/var/lib/cni"); err == nil {
			removed = append(removed, "/var/lib/cni")
			os.RemoveAll("/var/lib/cni")
		}
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(string(b)) != h.ipForward {
		removed = append(removed, "net.ipv4.ip_forward = "+strings.TrimSpace(string(b))+" (reset to "+h.ipForward+")")
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(h.ipForward), 0o644); err != nil {
			t.Errorf("resetting net.ipv4.ip_forward: %v", err)
		}
	}
	sort.Strings(removed)
	if len(removed) > 0 {
		t.Logf("cleaned up after bridge networking:\n  %s", strings.Join(removed, "\n  "))
	}
	// What is left is a leak.
	for _, n := range netnsNames() {
		if !h.netns[n] {
			t.Errorf("netns %s left behind", n)
		}
	}
	for _, l := range hostLinks(t) {
		if !h.links[l] && (l == bridgeName || strings.HasPrefix(l, "veth")) {
			t.Errorf("link %s left behind", l)
		}
	}
	for _, c := range iptablesChains() {
		if !h.chains[c] {
			t.Errorf("iptables chain %s left behind", c)
		}
	}
	for _, tb := range nftTables(t) {
		if !h.nftTables[tb] && iptablesNFTTables[tb] {
			t.Errorf("nft table %s left behind", tb)
		}
	}
}

// shinyBridgeJob is example/shiny.nomad.hcl in bridge mode: the app listens
// on 0.0.0.0:8080 in the allocation's network namespace, and Nomad maps a
// host port to it.
const shinyBridgeJob = `job "shiny-bridge" {
  type = "service"
  group "app" {
` + runOnce + `    network {
      mode = "bridge"
      port "http" {
        to = 8080
      }
    }
    task "shiny" {
      driver = "bwrap-r"
      config {
        command = "Rscript"
        args    = ["-e", "shiny::runApp('/local/app', host = '0.0.0.0', port = 8080, launch.browser = FALSE)"]
      }
      template {
        destination     = "local/app/app.R"
        left_delimiter  = "[["
        right_delimiter = "]]"
        data            = <<-R
          library(shiny)
          ui <- fluidPage(
            titlePanel("Hello from bwrap-r"),
            sliderInput("n", "Observations", 1, 1000, 100),
            plotOutput("hist")
          )
          server <- function(input, output) {
            output$hist <- renderPlot(hist(rnorm(input$n), main = R.version.string))
          }
          shinyApp(ui, server)
        R
      }
      kill_signal  = "SIGTERM"
      kill_timeout = "10s"
      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}
`

// TestNetworkBridge runs tasks in Nomad's bridge mode (CNI, the nomad
// bridge on this machine): a Shiny app on 0.0.0.0:8080 inside the
// allocation's namespace answers on the host port Nomad mapped on
// 127.0.0.1, and network.dns shows in the sandbox's /etc/resolv.conf.
func TestNetworkBridge(t *testing.T) {
	setup(t)
	for _, p := range []string{"bridge", "portmap", "firewall", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/cni", p)); err != nil {
			t.Fatalf("CNI plugin %s missing (apt-get install containernetworking-plugins): %v", p, err)
		}
	}
	before := snapshotHostNet(t)
	if before.links[bridgeName] {
		t.Fatalf("a %s bridge exists before the test (another agent's?): not touching it", bridgeName)
	}
	// Runs after the agent's stop.
	t.Cleanup(func() { before.restore(t) })
	a := newAgentOpts(t, agentOpts{client: `  cni_path = "/usr/lib/cni"`})
	if err := a.waitDriver(true, time.Minute); err != nil {
		t.Fatal(err)
	}

	t.Run("shiny", func(t *testing.T) {
		const job = "shiny-bridge"
		start := time.Now()
		a.runJob(t, writeJob(t, job, shinyBridgeJob), job)
		al := a.waitRunning(t, job, "shiny", 2*time.Minute)
		port, hostIP := al.port("http")
		if port == 0 {
			t.Fatalf("no port http: %+v", al.AllocatedResources.Shared.Ports)
		}
		if hostIP != "127.0.0.1" {
			t.Fatalf("port http mapped on %s, want 127.0.0.1 (dev agent on lo)", hostIP)
		}
		url := fmt.Sprintf("http://127.0.0.1:%d/", port)
		body, last, ok := waitHTTP(url, 90*time.Second)
		if !ok {
			logs, _ := a.nomad("alloc", "logs", "-stderr", al.ID, "shiny")
			t.Fatalf("GET %s: no 200 after 90s (last: %s); task stderr:\n%s", url, last, logs)
		}
		t.Logf("shiny answered on 127.0.0.1:%d (-> 8080 in the allocation's netns) after %v", port, time.Since(start).Round(time.Millisecond))
		if !strings.Contains(body, "Hello from bwrap-r") {
			t.Fatalf("GET %s: the page lacks the app's title:\n%.2000s", url, body)
		}
		// The app listens in the allocation's namespace, not the host's.
		if uid, err := listenerUID(8080); err == nil {
			t.Errorf("something of uid %d listens on the host's port 8080: the app is not in the allocation's netns", uid)
		}
		// The task's processes (and an exec) are in Nomad's namespace for
		// the allocation.
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join("/var/run/netns", al.ID), &st); err != nil {
			t.Fatalf("the allocation's netns: %v", err)
		}
		want := fmt.Sprintf("net:[%d]", st.Ino)
		out, stderr, code := a.nomadIO(t, "", "alloc", "exec", "-task", "shiny", al.ID, "/bin/sh", "-c", "id -u; readlink /proc/self/ns/net")
		f := strings.Fields(out)
		if code != 0 || len(f) != 2 {
			t.Fatalf("nomad alloc exec: exit %d, stdout %q, stderr %q", code, out, stderr)
		}
		if f[1] != want {
			t.Errorf("exec in the task is in %s, want the allocation's %s", f[1], want)
		}
		uid, _ := strconv.Atoi(f[0])
		procs := procsOfUID(uid)
		if len(procs) == 0 {
			t.Errorf("no process of the task's uid %d on the host", uid)
		}
		for _, p := range procs {
			pid, _, _ := strings.Cut(p, " ")
			if ns, err := os.Readlink("/proc/" + pid + "/ns/net"); err == nil && ns != want {
				t.Errorf("task process %s is in %s, want the allocation's %s", p, ns, want)
			}
		}
		t.Logf("task processes (uid %d) in the allocation's %s: %s", uid, want, strings.Join(procs, "; "))
		a.stopJob(job)
		a.waitAlloc(t, job, time.Minute, "terminal", terminal)
	})

	t.Run("dns", func(t *testing.T) {
		const job = "bridge-dns"
		hcl := fmt.Sprintf(`job %q {
  type = "batch"
  group "g" {
`+runOnce+`    network {
      mode = "bridge"
      dns {
        servers  = ["127.0.0.53"]
        searches = ["bwrap-r.test"]
      }
    }
    task "t" {
      driver = "bwrap-r"
      config {
        command = "/bin/sh"
        args    = ["-c", "cat /etc/resolv.conf; echo ---; cat /proc/net/dev"]
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
`, job)
		a.runJob(t, writeJob(t, job, hcl), job)
		al := a.waitAlloc(t, job, time.Minute, "terminal", terminal)
		out, _ := a.nomad("alloc", "logs", al.ID, "t")
		t.Logf("%s; output:\n%s", al.ClientStatus, out)
		if al.ClientStatus != "complete" {
			t.Fatalf("want complete:\n%s", al)
		}
		resolv, netdev, _ := strings.Cut(out, "---\n")
		if !strings.Contains(resolv, "nameserver 127.0.0.53") || !strings.Contains(resolv, "search bwrap-r.test") {
			t.Errorf("/etc/resolv.conf in the sandbox lacks the job's network.dns:\n%s", resolv)
		}
		// The allocation's namespace: loopback and its veth end, none of the
		// host's interfaces.
		if !strings.Contains(netdev, "eth0") || strings.Contains(netdev, "ifb0") {
			t.Errorf("the task's /proc/net/dev is not the allocation's namespace:\n%s", netdev)
		}
	})
}

// TestNetworkNone checks task config network = "none": such a task cannot
// reach a listener on the host's loopback, while the same task without it
// can.
func TestNetworkNone(t *testing.T) {
	a := sharedAgent(t)
	target := listenLoopback(t)
	script := fmt.Sprintf("cat /proc/net/dev; exec 3<>/dev/tcp/127.0.0.1/%d && echo connected", target.port)
	for _, tc := range []struct {
		name, extra string
		connects    bool
	}{
		{"host", "", true},
		{"none", `        network = "none"`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := "network-" + tc.name
			before := target.count.Load()
			a.runJob(t, writeJob(t, job, batchJob(job, "", fmt.Sprintf(`        command = "/bin/bash"
        args    = ["-c", %q]
%s`, script, tc.extra))), job)
			al := a.waitAlloc(t, job, time.Minute, "terminal", terminal)
			stdout, _ := a.nomad("alloc", "logs", al.ID, "t")
			stderr, _ := a.nomad("alloc", "logs", "-stderr", al.ID, "t")
			accepted := target.count.Load() - before
			t.Logf("%s; %d connection(s) accepted; stdout:\n%s\nstderr: %s", al.ClientStatus, accepted, stdout, stderr)
			connected := strings.Contains(stdout, "connected")
			if connected != tc.connects || (accepted > 0) != tc.connects {
				t.Errorf("want connects=%v, got: printed connected %v, %d connection(s) accepted", tc.connects, connected, accepted)
			}
			if !tc.connects {
				if al.ClientStatus != "failed" {
					t.Errorf("want the task failed (connect refused), got %s", al.ClientStatus)
				}
				// Its own namespace: only lo.
				if strings.Contains(stdout, "eth0") {
					t.Errorf("network = none: the task sees the host's interfaces:\n%s", stdout)
				}
			} else if al.ClientStatus != "complete" {
				t.Errorf("want complete, got:\n%s", al)
			}
		})
	}
}
