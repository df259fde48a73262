// Package logcollect collects the stdout and stderr of every task of a node in
// one process, the collector, and writes them as Nomad's logmon does:
// <logs dir>/<task>.stdout.N and .stderr.N, a new file when one reaches its
// size, the oldest removed beyond the file count. Data moves from the task's
// pipe to its file inside the kernel (splice), so the collector holds no
// task's data, its memory does not grow with what tasks write, and a
// collector killed at any moment has lost nothing: what it had not moved is
// still in the pipe for the next one.
package logcollect

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// lineScanLimit is how near a file's end a line is kept whole by starting the
// next file before it, as logmon does.
const lineScanLimit = 32 * 1024

// Limits are a stream's rotation limits.
type Limits struct {
	MaxFiles int   `json:"max_files"`
	FileSize int64 `json:"file_size"`
}

func (l Limits) check() error {
	if l.MaxFiles < 1 || l.FileSize < 1 {
		return fmt.Errorf("log limits must be positive: %d files of %d bytes", l.MaxFiles, l.FileSize)
	}
	return nil
}

// rotator is one stream's files: base.N in the logs dir, written at an
// explicit offset (splice refuses O_APPEND files).
type rotator struct {
	dir  int // the logs dir, opened by whoever registered the task
	base string
	lim  Limits
	file int // -1 until the first write
	idx  int
	size int64
}

func newRotator(dir int, base string, lim Limits) *rotator {
	return &rotator{dir: dir, base: base, lim: lim, file: -1}
}

// openCurrent opens base.idx for writing (and reading its last byte), refusing anything but a plain
// regular file of its own: the collector is root, and a link planted in the
// logs dir must not redirect its writes.
func (r *rotator) openCurrent() (full bool, err error) {
	name := r.base + "." + strconv.Itoa(r.idx)
	fd, err := unix.Openat(r.dir, name, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0o644)
	if err != nil {
		return false, fmt.Errorf("opening log file %s: %w", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return false, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		unix.Close(fd)
		return false, fmt.Errorf("log file %s is not a regular file of its own", name)
	}
	if st.Size >= r.lim.FileSize {
		unix.Close(fd)
		return true, nil
	}
	r.file, r.size = fd, st.Size
	return false, nil
}

// next moves to the file to write: on the first call the newest existing
// file (a collector started again goes on where the last one stopped), then
// the one after; full files are passed over, as logmon does.
func (r *rotator) next() error {
	if r.file >= 0 {
		unix.Close(r.file)
		r.file = -1
		r.idx++
	} else {
		idxs, err := r.indexes()
		if err != nil {
			return err
		}
		if len(idxs) > 0 {
			r.idx = idxs[len(idxs)-1]
		}
	}
	for {
		full, err := r.openCurrent()
		if err != nil {
			return err
		}
		if !full {
			break
		}
		r.idx++
	}
	return r.purge()
}

// indexes lists the indexes of the stream's files, oldest first.
func (r *rotator) indexes() ([]int, error) {
	fd, err := unix.Openat(r.dir, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("listing the logs dir: %w", err)
	}
	f := os.NewFile(uintptr(fd), "logs")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("listing the logs dir: %w", err)
	}
	var idxs []int
	prefix := r.base + "."
	for _, n := range names {
		if s, ok := strings.CutPrefix(n, prefix); ok {
			if i, err := strconv.Atoi(s); err == nil && i >= 0 && strconv.Itoa(i) == s {
				idxs = append(idxs, i)
			}
		}
	}
	slices.Sort(idxs)
	return idxs, nil
}

// purge removes the oldest files beyond MaxFiles.
func (r *rotator) purge() error {
	idxs, err := r.indexes()
	if err != nil {
		return err
	}
	for len(idxs) > r.lim.MaxFiles {
		name := r.base + "." + strconv.Itoa(idxs[0])
		if err := unix.Unlinkat(r.dir, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing old log file %s: %w", name, err)
		}
		idxs = idxs[1:]
	}
	return nil
}

// endsMidLine says whether the current file's last byte is not a newline.
func (r *rotator) endsMidLine() bool {
	if r.size == 0 {
		return false
	}
	var last [1]byte
	n, err := unix.Pread(r.file, last[:], r.size-1)
	return err == nil && n == 1 && last[0] != '\n'
}

func (r *rotator) close() {
	if r.file >= 0 {
		unix.Close(r.file)
		r.file = -1
	}
}

// peeker copies the head of a pipe without taking it (tee into a scratch
// pipe, then read that). One per collector: it is used only near a file's
// end, and briefly.
type peeker struct {
	mu  sync.Mutex
	r   int
	w   int
	buf []byte
}

func newPeeker() (*peeker, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	return &peeker{r: p[0], w: p[1], buf: make([]byte, lineScanLimit+1)}, nil
}

// peek returns a copy of up to n (at most lineScanLimit+1) bytes at the head
// of the pipe; (nil, nil) at end of file; EAGAIN when it is empty.
func (p *peeker) peek(pipe int, n int) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n > len(p.buf) {
		n = len(p.buf)
	}
	k, err := unix.Tee(pipe, p.w, n, unix.SPLICE_F_NONBLOCK)
	if err != nil {
		return nil, err
	}
	if k == 0 {
		return nil, nil
	}
	got := 0
	for got < int(k) {
		m, err := unix.Read(p.r, p.buf[got:k])
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, err
		}
		got += m
	}
	return bytes.Clone(p.buf[:k]), nil
}

// errEOF: every writer of the pipe has closed it and it is empty.
var errEOF = errors.New("end of stream")

// move moves what it can of the pipe's head into the current file: at most
// up to lineScanLimit before the file's end in one go, then line by line, a
// line that would not fit starting the next file (unless it is longer than a
// whole file, which is then filled). It returns EAGAIN when the pipe is
// empty and errEOF at its end.
func (r *rotator) move(pipe int, pk *peeker) error {
	if r.file < 0 || r.size >= r.lim.FileSize {
		if err := r.next(); err != nil {
			return err
		}
	}
	remaining := r.lim.FileSize - r.size
	var n int64
	if remaining > lineScanLimit {
		n = remaining - lineScanLimit
	} else {
		head, err := pk.peek(pipe, lineScanLimit+1)
		if err != nil {
			return err
		}
		if head == nil {
			return errEOF
		}
		fits := head
		if int64(len(fits)) > remaining {
			fits = fits[:remaining]
		}
		switch nl := bytes.LastIndexByte(fits, '\n'); {
		case nl >= 0:
			n = int64(nl) + 1
		case r.size == 0 || (len(head) > lineScanLimit && bytes.IndexByte(head, '\n') < 0):
			// A line longer than the scan limit fills the file, as one
			// longer than a file does in logmon: waiting for its end
			// would hold the task. A full head whose line ends past
			// the file's end is not such a line: it starts the next.
			n = int64(len(fits))
		case r.endsMidLine():
			// The file holds the start of this line (a cut made in one
			// go above, or a line still being written): it goes on
			// here, and a line that does not fit is cut here.
			n = int64(len(fits))
		default:
			// No whole line fits: the next file starts with it.
			return r.next()
		}
	}
	off := r.size
	moved, err := unix.Splice(pipe, nil, r.file, &off, int(n), unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
	if moved > 0 {
		r.size = off
	}
	if err != nil {
		return err
	}
	if moved == 0 {
		return errEOF
	}
	return nil
}
