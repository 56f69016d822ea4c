// Package remotetest has a fake remote.Remote for unit tests of what the activities
// decide: commands are answered by rules the test sets, files live in memory, and
// every call is recorded. Integration tests use a real sshd (internal/sshtest) or
// the lab instead.
package remotetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// Reply is the fake answer to a command.
type Reply struct {
	Exit   int
	Stdout string
	Stderr string
	Err    error // returned instead of a result
}

// Match tells whether a rule answers a command.
type Match func(argv []string) bool

// Script matches a script the activities send as /bin/sh -c TEXT NAME ARGS...: by
// its name (the script's file name) and, when given, the first arguments.
func Script(name string, args ...string) Match {
	return func(argv []string) bool {
		return len(argv) >= 4 && argv[0] == "/bin/sh" && argv[1] == "-c" && argv[3] == name &&
			len(argv)-4 >= len(args) && slices.Equal(argv[4:4+len(args)], args)
	}
}

// Argv matches a command whose argv starts with prefix.
func Argv(prefix ...string) Match {
	return func(argv []string) bool { return len(argv) >= len(prefix) && slices.Equal(argv[:len(prefix)], prefix) }
}

// Call is one recorded command.
type Call struct {
	Host string // the host's name
	Cmd  remote.Cmd
	Line string // as Line shows it
}

// Line shows a command for assertions: a script as its name and arguments, any
// other command as its argv, space-separated; "sudo " in front when it runs so.
func Line(c remote.Cmd) string {
	argv := c.Argv
	if len(argv) >= 4 && argv[0] == "/bin/sh" && argv[1] == "-c" {
		argv = argv[3:]
	}
	s := strings.Join(argv, " ")
	if c.Sudo {
		s = "sudo " + s
	}
	return s
}

// File is a file the fake holds.
type File struct {
	Data  []byte
	Attrs remote.Attrs
}

type rule struct {
	match Match
	reply func(remote.Host, remote.Cmd) Reply
}

// Fake is a remote.Remote whose commands are answered by rules. A command no rule
// answers fails the test. Rules added later take precedence, so a test can add a
// default and override it.
type Fake struct {
	t     testing.TB
	mu    sync.Mutex
	rules []rule
	calls []Call
	files map[string]File
	dirs  []string
	// Home is the login user's home directory, for relative MkdirAll paths.
	Home string
}

// New returns a fake with no rules and no files.
func New(t testing.TB) *Fake {
	return &Fake{t: t, files: map[string]File{}, Home: "/root"}
}

// On answers the commands m matches with r.
func (f *Fake) On(m Match, r Reply) *Fake {
	return f.OnFunc(m, func(remote.Host, remote.Cmd) Reply { return r })
}

// OnFunc answers the commands m matches with what fn returns.
func (f *Fake) OnFunc(m Match, fn func(remote.Host, remote.Cmd) Reply) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, rule{m, fn})
	return f
}

// Calls returns the commands run so far, in order.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Lines returns the commands run so far as Line shows them.
func (f *Fake) Lines() []string {
	var out []string
	for _, c := range f.Calls() {
		out = append(out, c.Line)
	}
	return out
}

// Run answers c by the newest rule that matches it.
func (f *Fake) Run(_ context.Context, h remote.Host, c remote.Cmd) (remote.Result, error) {
	f.mu.Lock()
	f.calls = append(f.calls, Call{Host: h.Name, Cmd: c, Line: Line(c)})
	var answer func(remote.Host, remote.Cmd) Reply
	for _, r := range slices.Backward(f.rules) {
		if r.match(c.Argv) {
			answer = r.reply
			break
		}
	}
	f.mu.Unlock()
	if answer == nil {
		f.t.Errorf("remotetest: no rule answers %q on %s", Line(c), h.Name)
		return remote.Result{}, &remote.Error{Kind: remote.Invalid, Msg: "remotetest: no rule answers " + Line(c)}
	}
	r := answer(h, c)
	if r.Err != nil {
		return remote.Result{}, r.Err
	}
	return remote.Result{ExitCode: r.Exit, Stdout: r.Stdout, Stderr: r.Stderr, LastLine: lastLine(r.Stdout + "\n" + r.Stderr)}, nil
}

// Capture is Run, with the whole standard output.
func (f *Fake) Capture(ctx context.Context, h remote.Host, c remote.Cmd, _ int) ([]byte, remote.Result, error) {
	res, err := f.Run(ctx, h, c)
	if err != nil {
		return nil, res, err
	}
	return []byte(res.Stdout), res, nil
}

// SetFile puts a file on the fake's hosts (all of them share one file system).
func (f *Fake) SetFile(p string, data []byte, a remote.Attrs) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[p] = File{Data: slices.Clone(data), Attrs: a}
}

// File returns a file the fake holds.
func (f *Fake) File(p string) (File, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	file, ok := f.files[p]
	return file, ok
}

// ReadFile reads a file set with SetFile or written with WriteFile.
func (f *Fake) ReadFile(_ context.Context, h remote.Host, p string, limit int64) ([]byte, error) {
	file, ok := f.File(p)
	if !ok {
		return nil, &remote.Error{Kind: remote.Refused, Msg: fmt.Sprintf("%s: opening %s: file does not exist", h.Label(), p)}
	}
	return file.Data[:min(int64(len(file.Data)), limit)], nil
}

// WriteFile stores the content. A src.SHA256 that does not match it is a
// Mismatch error, as on a real host.
func (f *Fake) WriteFile(_ context.Context, h remote.Host, p string, src remote.Content, a remote.Attrs, sent *atomic.Int64) (string, error) {
	r, err := src.Open()
	if err != nil {
		return "", &remote.Error{Kind: remote.Invalid, Msg: h.Label() + ": upload src: " + err.Error()}
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	if sent != nil {
		sent.Add(int64(len(data)))
	}
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	if src.SHA256 != "" && src.SHA256 != hexSum {
		return "", &remote.Error{Kind: remote.Mismatch, Msg: h.Label() + ": the host wrote other bytes than were sent"}
	}
	f.SetFile(p, data, a)
	return hexSum, nil
}

// MkdirAll records the directory.
func (f *Fake) MkdirAll(_ context.Context, _ remote.Host, dir string, _ fs.FileMode) (string, error) {
	if !path.IsAbs(dir) {
		dir = path.Join(f.Home, dir)
	}
	f.mu.Lock()
	f.dirs = append(f.dirs, dir)
	f.mu.Unlock()
	return dir, nil
}

// DialUnix and DialTCP fail: the fake has no streams.
func (f *Fake) DialUnix(_ context.Context, h remote.Host, socket string) (net.Conn, error) {
	return nil, &remote.Error{Kind: remote.Unreachable, Msg: h.Label() + ": remotetest has no streams (" + socket + ")"}
}

func (f *Fake) DialTCP(_ context.Context, h remote.Host, addr string) (net.Conn, error) {
	return nil, &remote.Error{Kind: remote.Unreachable, Msg: h.Label() + ": remotetest has no streams (" + addr + ")"}
}

// Dial returns a connection whose commands the fake's rules answer.
func (f *Fake) Dial(_ context.Context, h remote.Host) (remote.Conn, error) {
	return &conn{f: f, h: h}, nil
}

type conn struct {
	f *Fake
	h remote.Host
}

func (c *conn) Run(ctx context.Context, cmd remote.Cmd) (remote.Result, error) {
	return c.f.Run(ctx, c.h, cmd)
}

func (c *conn) DialUnix(ctx context.Context, socket string) (net.Conn, error) {
	return c.f.DialUnix(ctx, c.h, socket)
}

func (c *conn) Close() error { return nil }

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

var _ remote.Remote = (*Fake)(nil)
