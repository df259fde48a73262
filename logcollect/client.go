package logcollect

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Client is a connection to the collector.
type Client struct {
	mu   sync.Mutex
	conn *net.UnixConn
}

// Dial connects to the collector at socket, refusing a listener that is not
// of this UID (a task must never receive another task's pipes).
func Dial(socket string) (*Client, error) {
	addr, release, err := socketAddr(socket)
	if err != nil {
		return nil, err
	}
	defer release()
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: addr, Net: "unixpacket"})
	if err != nil {
		return nil, err
	}
	if err := peerIsUs(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("collector socket %s: %w", socket, err)
	}
	return &Client{conn: conn}, nil
}

// PeerPid is the collector's pid.
func (c *Client) PeerPid() (int, error) {
	cred, err := peerCred(c.conn)
	if err != nil {
		return 0, err
	}
	return int(cred.Pid), nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Closed is closed when the collector goes away. It reads the connection, so
// a Client used for requests must not be watched: dial a second one.
func (c *Client) Closed() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		buf := make([]byte, 1)
		for {
			if _, err := c.conn.Read(buf); err != nil {
				return
			}
		}
	}()
	return ch
}

func (c *Client) call(req request, files []*os.File) (reply, []*os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := writeMsg(c.conn, req, files); err != nil {
		return reply{}, nil, err
	}
	rep, got, err := readMsg[reply](c.conn)
	if err != nil {
		return reply{}, nil, err
	}
	if rep.Error != "" {
		closeAll(got)
		return rep, nil, &RefusedError{rep.Error}
	}
	return rep, got, nil
}

// RefusedError is the collector's answer to a request it refused (bad
// input, or an older collector's unknown request): the connection is fine.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return e.Reason }

// Add registers a task: its logs dir and, for each file base name, the read
// end of the pipe the task writes. The collector takes copies; the caller
// keeps its own, so that a collector killed mid-write leaves the pipes
// readable for the next one.
func (c *Client) Add(id string, dir *os.File, names []string, pipes []*os.File, lim Limits) error {
	if len(names) != len(pipes) {
		return errors.New("one pipe per name")
	}
	files := append([]*os.File{dir}, pipes...)
	_, _, err := c.call(request{Op: opAdd, ID: id, Names: names, Limits: lim}, files)
	return err
}

// Files returns copies of a registered task's live pipes by base name; nil
// when the collector does not know the task (its streams have ended).
func (c *Client) Files(id string) (map[string]*os.File, error) {
	rep, got, err := c.call(request{Op: opFiles, ID: id}, nil)
	if err != nil {
		return nil, err
	}
	if !rep.Known {
		closeAll(got)
		return nil, nil
	}
	if len(got) != len(rep.Names) {
		closeAll(got)
		return nil, errors.New("collector sent a descriptor count that does not match its names")
	}
	m := make(map[string]*os.File, len(got))
	for i, f := range got {
		var st unix.Stat_t
		if unix.Fstat(int(f.Fd()), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
			closeAll(got)
			return nil, errors.New("collector sent a descriptor that is not a pipe")
		}
		m[rep.Names[i]] = f
	}
	return m, nil
}

// Forget stops collecting a task (its writers are gone or going).
func (c *Client) Forget(id string) error {
	_, _, err := c.call(request{Op: opForget, ID: id}, nil)
	return err
}

// Wait waits, at most d, until the collector holds none of the task's
// streams (they have all ended, or it never knew the task), and reports
// whether that came. It holds the connection meanwhile: use one of its own.
func (c *Client) Wait(id string, d time.Duration) (bool, error) {
	rep, _, err := c.call(request{Op: opWait, ID: id, WaitMs: d.Milliseconds()}, nil)
	return err == nil && !rep.Known, err
}

// Subscribe turns the connection into a feed: the channel gets the ID of
// every task whose streams have all ended from now on (its output is then in
// its files), and is closed when the collector goes away. The connection
// serves nothing else afterwards. A collector from before subscriptions
// refuses it with an error and the connection stays as it was.
func (c *Client) Subscribe() (<-chan string, error) {
	if _, _, err := c.call(request{Op: opSubscribe}, nil); err != nil {
		return nil, err
	}
	ended := make(chan string, 64)
	go func() {
		defer close(ended)
		for {
			rep, fds, err := readMsg[reply](c.conn)
			closeAll(fds)
			if err != nil {
				return
			}
			if rep.Ended != "" {
				ended <- rep.Ended
			}
		}
	}()
	return ended, nil
}

// Spawn starts a collector from exe in its own session, detached from the
// caller, its diagnostics appended to logPath. It returns once the socket
// answers (or another collector's does).
func Spawn(exe, socket, lock, logPath string) (*Client, error) {
	if c, err := Dial(socket); err == nil {
		return c, nil
	}
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("collector log: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(exe, Command, "-socket", socket, "-lock", lock)
	cmd.Env = []string{}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the log collector: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := Dial(socket)
		if err == nil {
			return c, nil
		}
		select {
		case werr := <-exited:
			// Another collector may have won the lock: its socket answers.
			if c, err := Dial(socket); err == nil {
				return c, nil
			}
			return nil, fmt.Errorf("the log collector exited (%v); see %s", werr, logPath)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the log collector did not answer on %s: %w", socket, err)
		}
	}
}
