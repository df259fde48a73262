package logcollect

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Command, as the first argument, makes any binary that links this package
// the collector: init runs it before main (and before a test binary's
// TestMain), so the plugin starts the collector from its own executable.
const Command = "_logd"

func init() {
	if len(os.Args) > 1 && os.Args[1] == Command {
		os.Exit(daemonMain(os.Args[2:]))
	}
}

func daemonMain(args []string) int {
	fs := flag.NewFlagSet(Command, flag.ContinueOnError)
	socket := fs.String("socket", "", "the socket to serve")
	lock := fs.String("lock", "", "the lock file that keeps one collector per socket")
	idle := fs.Duration("idle", 10*time.Second, "exit after this long with no client and no task")
	if err := fs.Parse(args); err != nil || *socket == "" || *lock == "" {
		return 2
	}
	logger := log.New(os.Stderr, "bwrap-r logd: ", log.LstdFlags|log.Lmsgprefix)
	c, err := Listen(*socket, *lock, logger)
	if errors.Is(err, ErrRunning) {
		return 0
	}
	if err != nil {
		logger.Print(err)
		return 1
	}
	c.ExitWhenIdle(*idle)
	c.Serve()
	return 0
}

// ErrRunning: another collector holds the lock.
var ErrRunning = errors.New("a collector is already running")

// Collector serves registrations on a unix socket and moves each registered
// stream's pipe into its files until the stream ends or is forgotten.
type Collector struct {
	listener *net.UnixListener
	lockFile *os.File
	pk       *peeker
	log      *log.Logger

	mu       sync.Mutex
	tasks    map[string]*task
	conns    int
	lastBusy time.Time
	// subs are the connections that asked to hear of every task whose
	// streams have all ended (opSubscribe).
	subs map[*subscriber]struct{}
}

// subscriber is one subscribed connection's queue of ended tasks' IDs.
type subscriber struct {
	ended      []string // guarded by Collector.mu
	overflowed bool     // guarded by Collector.mu: more than maxPendingWords
	wake       chan struct{}
}

// maxPendingWords bounds the words a subscriber may leave unread (a
// variable for the tests).
var maxPendingWords = 4096

type task struct {
	dir     *os.File
	streams []*stream
	left    int
	done    chan struct{} // closed when its last stream has ended
	// forgotten: its streams were cut off (forget), not drained, so no
	// subscriber hears that its output is in its files.
	forgotten bool
}

type stream struct {
	name string
	pipe *os.File
	rot  *rotator
	gone chan struct{} // closed when forgotten
}

// Listen takes the lock (ErrRunning if another collector has it) and listens
// on socket, which only this UID may connect to.
func Listen(socket, lock string, logger *log.Logger) (*Collector, error) {
	lf, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("collector lock: %w", err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lf.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrRunning
		}
		return nil, fmt.Errorf("collector lock: %w", err)
	}
	addr, release, err := socketAddr(socket)
	if err != nil {
		lf.Close()
		return nil, err
	}
	defer release()
	// Ours, with the lock held: a socket left by a collector that died.
	_ = os.Remove(socket)
	old := unix.Umask(0o077)
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: addr, Net: "unixpacket"})
	unix.Umask(old)
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("collector socket: %w", err)
	}
	l.SetUnlinkOnClose(false)
	pk, err := newPeeker()
	if err != nil {
		l.Close()
		lf.Close()
		return nil, err
	}
	return &Collector{listener: l, lockFile: lf, pk: pk, log: logger,
		tasks: map[string]*task{}, subs: map[*subscriber]struct{}{}, lastBusy: time.Now()}, nil
}

// ExitWhenIdle ends the process once it has had no client and no task for d.
func (c *Collector) ExitWhenIdle(d time.Duration) {
	go func() {
		for range time.Tick(d / 4) {
			c.mu.Lock()
			idle := c.conns == 0 && len(c.tasks) == 0 && time.Since(c.lastBusy) >= d
			c.mu.Unlock()
			if idle {
				os.Exit(0)
			}
		}
	}()
}

// Serve accepts clients until the listener fails.
func (c *Collector) Serve() {
	for {
		conn, err := c.listener.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			c.log.Printf("accept: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go c.serveConn(conn)
	}
}

// Close stops accepting and forgets every task (tests).
func (c *Collector) Close() {
	c.listener.Close()
	c.mu.Lock()
	ids := slices.Collect(maps.Keys(c.tasks))
	c.mu.Unlock()
	for _, id := range ids {
		c.forget(id)
	}
	c.lockFile.Close()
}

func (c *Collector) busy(delta int) {
	c.mu.Lock()
	c.conns += delta
	c.lastBusy = time.Now()
	c.mu.Unlock()
}

func (c *Collector) serveConn(conn *net.UnixConn) {
	defer conn.Close()
	if err := peerIsUs(conn); err != nil {
		c.log.Printf("refused a client: %v", err)
		return
	}
	c.busy(1)
	defer c.busy(-1)
	for {
		req, fds, err := readMsg[request](conn)
		if err != nil {
			return
		}
		if req.Op == opSubscribe {
			closeAll(fds)
			c.feed(conn)
			return
		}
		rep, out := c.handle(req, fds)
		err = writeMsg(conn, rep, out)
		for _, f := range out {
			f.Close()
		}
		if err != nil {
			return
		}
	}
}

func (c *Collector) handle(req request, fds []*os.File) (reply, []*os.File) {
	switch req.Op {
	case opAdd:
		if err := c.add(req, fds); err != nil {
			closeAll(fds)
			return reply{Error: err.Error()}, nil
		}
		return reply{}, nil
	case opFiles:
		closeAll(fds)
		names, files := c.files(req.ID)
		return reply{Known: files != nil, Names: names}, files
	case opForget:
		closeAll(fds)
		c.forget(req.ID)
		return reply{}, nil
	case opWait:
		closeAll(fds)
		c.mu.Lock()
		t, ok := c.tasks[req.ID]
		c.mu.Unlock()
		if !ok {
			return reply{}, nil
		}
		select {
		case <-t.done:
			return reply{}, nil
		case <-time.After(time.Duration(req.WaitMs) * time.Millisecond):
			return reply{Known: true}, nil
		}
	}
	closeAll(fds)
	return reply{Error: fmt.Sprintf("unknown request %q", req.Op)}, nil
}

// feed answers a subscription, then sends on conn the ID of every task whose
// streams have all ended, until conn closes. The connection carries nothing
// else from then on. A plugin that hears of a task here knows, without a
// round trip of its own, that the task's output is in its files.
func (c *Collector) feed(conn *net.UnixConn) {
	s := &subscriber{wake: make(chan struct{}, 1)}
	c.mu.Lock()
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.subs, s)
		c.mu.Unlock()
	}()
	if writeMsg(conn, reply{}, nil) != nil {
		return
	}
	// The subscriber sends nothing more: a read ends when it goes.
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		buf := make([]byte, 1)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-gone:
			return
		case <-s.wake:
		}
		c.mu.Lock()
		ended, overflowed := s.ended, s.overflowed
		s.ended = nil
		c.mu.Unlock()
		if overflowed {
			c.log.Printf("a subscriber left %d words unread; closing its connection", maxPendingWords)
			return
		}
		for _, id := range ended {
			if writeMsg(conn, reply{Ended: id}, nil) != nil {
				return
			}
		}
	}
}

// add takes the logs dir and one pipe read end per name; a task already
// registered keeps its streams (a plugin registering again after the
// collector restarted may race one that never died).
func (c *Collector) add(req request, fds []*os.File) error {
	if req.ID == "" || len(req.Names) == 0 || len(fds) != len(req.Names)+1 {
		return fmt.Errorf("add %q: want the logs dir and one pipe per name, got %d descriptors for %d names", req.ID, len(fds), len(req.Names))
	}
	if err := req.Limits.check(); err != nil {
		return err
	}
	for _, n := range req.Names {
		if !ValidName(n) {
			return fmt.Errorf("add %q: bad log file name %q", req.ID, n)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(fds[0].Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("add %q: the first descriptor is not a directory", req.ID)
	}
	for _, f := range fds[1:] {
		fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
		if err != nil || unix.Fstat(int(f.Fd()), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO || fl&unix.O_ACCMODE != unix.O_RDONLY {
			return fmt.Errorf("add %q: a stream descriptor is not a pipe's read end", req.ID)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.tasks[req.ID]; ok {
		closeAll(fds)
		return nil
	}
	t := &task{dir: fds[0], left: len(req.Names), done: make(chan struct{})}
	for i, name := range req.Names {
		raw := fds[i+1]
		fd, err := unix.FcntlInt(raw.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		raw.Close()
		if err == nil {
			err = unix.SetNonblock(fd, true)
		}
		if err != nil {
			// Close what this task took so far; nothing was started.
			for _, s := range t.streams {
				s.pipe.Close()
			}
			for _, f := range fds[i+2:] {
				f.Close()
			}
			t.dir.Close()
			return fmt.Errorf("add %q: %w", req.ID, err)
		}
		// Non-blocking before NewFile: the runtime's poller waits for it.
		t.streams = append(t.streams, &stream{
			name: name,
			pipe: os.NewFile(uintptr(fd), name),
			rot:  newRotator(int(t.dir.Fd()), name, req.Limits),
			gone: make(chan struct{}),
		})
	}
	c.tasks[req.ID] = t
	c.lastBusy = time.Now()
	for _, s := range t.streams {
		go c.run(req.ID, t, s)
	}
	return nil
}

// run moves one stream until it ends or is forgotten. An error writing (a
// full disk, say) leaves the data in the pipe and is tried again; the task
// blocks once its pipe is full rather than lose output.
func (c *Collector) run(id string, t *task, s *stream) {
	defer c.ended(id, t, s)
	rc, err := s.pipe.SyscallConn()
	if err != nil {
		c.log.Printf("%s %s: %v", id, s.name, err)
		return
	}
	var lastErr string
	for {
		var moveErr error
		err := rc.Read(func(fd uintptr) bool {
			moveErr = s.rot.move(int(fd), c.pk)
			return !errors.Is(moveErr, unix.EAGAIN)
		})
		switch {
		case err != nil: // forgotten: the pipe was closed
			return
		case errors.Is(moveErr, errEOF):
			return
		case moveErr != nil:
			if moveErr.Error() != lastErr {
				c.log.Printf("%s %s: %v (retrying)", id, s.name, moveErr)
				lastErr = moveErr.Error()
			}
			select {
			case <-s.gone:
				return
			case <-time.After(time.Second):
			}
		default:
			lastErr = ""
		}
	}
}

func (c *Collector) ended(id string, t *task, s *stream) {
	s.rot.close()
	c.mu.Lock()
	defer c.mu.Unlock()
	s.pipe.Close()
	t.left--
	if t.left == 0 {
		close(t.done)
		t.dir.Close()
		if c.tasks[id] == t {
			delete(c.tasks, id)
		}
		c.lastBusy = time.Now()
		if t.forgotten {
			return
		}
		for sub := range c.subs {
			if len(sub.ended) >= maxPendingWords {
				// A subscriber that does not read: its connection is
				// closed, and a plugin that is still there comes back and
				// hands over its tasks again.
				sub.overflowed = true
			} else {
				sub.ended = append(sub.ended, id)
			}
			select {
			case sub.wake <- struct{}{}:
			default:
			}
		}
	}
}

// files gives copies of the read ends of a task's live streams, or nil.
func (c *Collector) files(id string) ([]string, []*os.File) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.tasks[id]
	if !ok {
		return nil, nil
	}
	var names []string
	files := []*os.File{}
	for _, s := range t.streams {
		rc, err := s.pipe.SyscallConn()
		if err != nil {
			continue
		}
		var dup int
		var dupErr error
		if err := rc.Control(func(fd uintptr) {
			dup, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
		}); err != nil || dupErr != nil {
			continue
		}
		names = append(names, s.name)
		files = append(files, os.NewFile(uintptr(dup), s.name))
	}
	return names, files
}

// forget stops a task's streams; what is still in their pipes stays there.
func (c *Collector) forget(id string) {
	c.mu.Lock()
	t, ok := c.tasks[id]
	if ok {
		delete(c.tasks, id)
		t.forgotten = true
		c.lastBusy = time.Now()
	}
	c.mu.Unlock()
	if !ok {
		return
	}
	for _, s := range t.streams {
		close(s.gone)
		// Wakes the stream's goroutine, which closes its file.
		s.pipe.Close()
	}
}

// ValidName reports whether the collector takes name as a log file's base
// name: a plain file name shorter than 200 bytes (Nomad's task names may
// hold most characters, never a slash).
func ValidName(n string) bool {
	return n != "" && n != "." && n != ".." && len(n) < 200 && !strings.ContainsAny(n, "/\x00")
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// peerIsUs refuses a peer of another UID: the socket carries pipes of every
// task and the collector writes as root.
func peerIsUs(conn *net.UnixConn) error {
	cred, err := peerCred(conn)
	if err != nil {
		return err
	}
	if cred.Uid != uint32(os.Geteuid()) {
		return fmt.Errorf("peer uid %d, pid %d", cred.Uid, cred.Pid)
	}
	return nil
}

// peerCred is the socket peer's credentials (SO_PEERCRED).
func peerCred(conn *net.UnixConn) (*unix.Ucred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, credErr
}

// The wire: one JSON message per packet, descriptors alongside.
const (
	opAdd    = "add"
	opFiles  = "files"
	opForget = "forget"
	opWait   = "wait"
	// opSubscribe turns the connection into a feed of ended tasks (feed).
	opSubscribe = "subscribe"
)

type request struct {
	Op     string   `json:"op"`
	ID     string   `json:"id,omitempty"`
	Names  []string `json:"names,omitempty"`
	Limits Limits   `json:"limits"`
	WaitMs int64    `json:"wait_ms,omitempty"`
}

type reply struct {
	Error string   `json:"error,omitempty"`
	Known bool     `json:"known,omitempty"`
	Names []string `json:"names,omitempty"`
	// Ended, on a subscribed connection, is a task whose streams have all
	// ended and whose output is all in its files.
	Ended string `json:"ended,omitempty"`
}

const maxMsg = 64 * 1024

// maxFds bounds the descriptors one message carries.
const maxFds = 16

func readMsg[T any](conn *net.UnixConn) (T, []*os.File, error) {
	var v T
	buf := make([]byte, maxMsg)
	oob := make([]byte, unix.CmsgSpace(4*maxFds))
	n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return v, nil, err
	}
	var files []*os.File
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return v, nil, err
		}
		for _, m := range msgs {
			fds, err := unix.ParseUnixRights(&m)
			if err != nil {
				continue
			}
			for _, fd := range fds {
				files = append(files, os.NewFile(uintptr(fd), "received"))
			}
		}
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(files)
		return v, nil, errors.New("message truncated")
	}
	if n == 0 {
		closeAll(files)
		return v, nil, errors.New("connection closed")
	}
	if err := json.Unmarshal(buf[:n], &v); err != nil {
		closeAll(files)
		return v, nil, err
	}
	return v, files, nil
}

func writeMsg(conn *net.UnixConn, v any, files []*os.File) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	_, _, err = conn.WriteMsgUnix(b, oob, nil)
	return err
}

// socketAddr is an address for socket that fits a sockaddr_un: a long path is
// reached through a descriptor of its directory.
func socketAddr(socket string) (string, func(), error) {
	if len(socket) < 100 {
		return socket, func() {}, nil
	}
	dir, base := socket[:strings.LastIndexByte(socket, '/')+1], socket[strings.LastIndexByte(socket, '/')+1:]
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("collector socket dir: %w", err)
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", fd, base), func() { unix.Close(fd) }, nil
}
