package remote

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// Cmd is one remote command. Argv is never interpreted by a shell on the way: every
// element, env value and the directory are single-quoted (see commandLine).
type Cmd struct {
	Argv []string
	Env  map[string]string
	// Dir is the working directory on the host, entered as the login user (before
	// sudo).
	Dir  string
	Sudo bool // run through sudo -n (never prompts)
	// Progress, when set, is called every ProgressEvery while the command runs, with
	// the time since Run was called and the last line written to either stream.
	Progress      func(elapsed time.Duration, lastLine string)
	ProgressEvery time.Duration
}

// Result is the outcome of a command that reached an exit status. Stdout and Stderr
// are tails of at most TailMax bytes each, valid UTF-8, starting with a
// "[clusterflow: N earlier bytes not kept]" line when output was cut.
type Result struct {
	ExitCode int
	Stdout   string
	Stderr   string
	LastLine string // last non-empty line of either stream, at most 200 bytes
}

// TailMax bounds the stdout and stderr a Result keeps (each): output goes into
// workflow history, so it must stay small.
const TailMax = 4096

// Runner runs commands on hosts. A non-zero exit status is a Result, not an error.
// Errors are *Error, or ctx's error when ctx ended first; the remote process group
// is then being killed (see wrapper.sh).
type Runner interface {
	Run(ctx context.Context, h Host, c Cmd) (Result, error)
	// Capture is Run keeping the whole standard output, up to limit bytes (more is
	// a Refused error), for reading a file whose every line matters. Standard error
	// is kept as a tail.
	Capture(ctx context.Context, h Host, c Cmd, limit int) ([]byte, Result, error)
}

// FS reads and writes files on hosts over SFTP.
type FS interface {
	// ReadFile reads path as the login user, at most limit bytes.
	ReadFile(ctx context.Context, h Host, path string, limit int64) ([]byte, error)
	// WriteFile makes path hold src, atomically: readers see the old file or the
	// new one, never a partial one. A temporary file next to path, written as the
	// login user (as root with h.Sudo), is renamed over path once it is complete,
	// synced, has attrs, and its checksum as the host computed it while writing
	// matches the checksum of what was sent (a Mismatch error otherwise); neither
	// side reads the data twice. When src.SHA256 is set, the host checks against
	// it and renames in the same command. It returns the content's SHA-256 (hex).
	// sent, when not nil, counts the bytes sent.
	WriteFile(ctx context.Context, h Host, path string, src Content, a Attrs, sent *atomic.Int64) (string, error)
	// MkdirAll creates dir and its parents as the login user (a relative dir is
	// under the user's home directory), sets dir's mode, and returns its absolute
	// path.
	MkdirAll(ctx context.Context, h Host, dir string, mode fs.FileMode) (string, error)
}

// Dialer opens streams on a host's connection: no port is opened on the host, and
// nothing but its sshd needs to be reachable.
type Dialer interface {
	// DialUnix connects to a unix socket on the host (direct-streamlocal; the
	// host's sshd needs AllowStreamLocalForwarding).
	DialUnix(ctx context.Context, h Host, socket string) (net.Conn, error)
	// DialTCP connects to addr as the host sees it (direct-tcpip; the host's sshd
	// needs AllowTcpForwarding local or yes).
	DialTCP(ctx context.Context, h Host, addr string) (net.Conn, error)
}

// Remote is all of it, as the activities get it: the Pool in a worker, a fake
// (remotetest.Fake) in unit tests.
type Remote interface {
	Runner
	FS
	Dialer
	// Dial opens a connection of its own to h, not a pooled one: for checking that
	// a login works (a new key, a group membership read at login). A jump host is
	// still reached through the pool. Close it when done.
	Dial(ctx context.Context, h Host) (Conn, error)
}

// Conn is one SSH connection to one host, outside the pool.
type Conn interface {
	Run(ctx context.Context, c Cmd) (Result, error)
	DialUnix(ctx context.Context, socket string) (net.Conn, error)
	Close() error
}

// Content is what WriteFile sends: Data, or else the worker's file at Path.
type Content struct {
	Data []byte
	Path string // read when Data is nil
	// SHA256 is the content's checksum (hex) when the caller knows it already;
	// empty: WriteFile computes it while sending.
	SHA256 string
}

// Open returns a reader of the content.
func (c Content) Open() (io.ReadCloser, error) {
	r, _, err := c.openSized()
	return r, err
}

// openSized returns a reader of the content and its size.
func (c Content) openSized() (io.ReadCloser, int64, error) {
	if c.Data != nil || c.Path == "" {
		return io.NopCloser(bytes.NewReader(c.Data)), int64(len(c.Data)), nil
	}
	f, err := os.Open(c.Path)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// Attrs are the mode and ownership of a written file.
type Attrs struct {
	Mode  uint32 // permission bits as chmod takes them: 0644, 04755 (at most 07777)
	Owner string // user name or uid; empty: the login user (root with sudo)
	Group string // group name or gid; empty: the owner's default group
}
