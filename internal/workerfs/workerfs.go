// Package workerfs is the worker's file policy: the directories of the worker's
// machine that a playbook (or any workflow input) may name. Everything a playbook
// names on the worker's side (SSH keys, known_hosts files, the Consul gossip key,
// CA files, binaries and their sums, package directories, image tarballs, upload
// sources and templates, the step's directory) is checked against it before the
// file is opened, by the parser and again by the activity that uses it.
//
// A path is allowed when it lies inside one of the policy's directories both as
// written and after its symbolic links are followed. A refusal reads the same
// whether the file exists or not, and never quotes what is in a file.
//
// It is a leaf: the standard library only.
package workerfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Policy is what a playbook may name on the worker's machine, in three classes:
//
//   - content: files whose bytes may travel to a host (upload sources and
//     templates, consul binaries and their sums, image tarballs, package
//     directories, CA files, the step's directory of Compose files and build
//     contexts);
//   - ssh: identity and known_hosts files, which only the SSH client reads and
//     which never leave the worker (the content directories, and ~/.ssh);
//   - write: files the worker makes or replaces (TOFU pins, the cluster key and
//     its companions, the gossip key).
//
// Denied files (the worker's own secrets: its database, codec keys, API key, TLS
// key) are refused in every class, even inside an allowed directory.
//
// The zero value and nil allow nothing; Unrestricted allows everything (tests,
// and library callers that do their own checks).
type Policy struct {
	content, ssh, write []entry
	deny                []entry
	open                bool
}

// entry is one allowed directory (or, with exact, one file), as configured
// (absolute and clean) and with its symbolic links followed.
type entry struct {
	path, real string
	exact      bool
}

// Config is what a Policy is made of. Every path is made absolute (relative to
// the current directory) and cleaned; it need not exist yet.
type Config struct {
	Content []string // directories whose files may be read and sent to hosts
	SSH     []string // further directories of identity and known_hosts files
	Write   []string // directories whose files may be made or replaced (and read)
	// WriteFiles are single files that may be made or replaced (and read as ssh
	// files): the inventory's default known_hosts and cluster key, say.
	WriteFiles []string
	// Deny are files refused in every class; a denied name also covers the same
	// name with a "-" suffix (SQLite's -wal, -shm and -journal files).
	Deny []string
}

// Unrestricted returns a policy that allows every path. The worker never uses it.
func Unrestricted() *Policy { return &Policy{open: true} }

// New returns the policy of c.
func New(c Config) (*Policy, error) {
	p := &Policy{}
	add := func(out *[]entry, paths []string, exact bool) error {
		for _, d := range paths {
			if d == "" {
				continue
			}
			if strings.ContainsRune(d, 0) {
				return errors.New("an allowed path contains a NUL byte")
			}
			abs, err := filepath.Abs(d)
			if err != nil {
				return fmt.Errorf("allowed path %s: %w", d, err)
			}
			if abs == "/" && !exact {
				return errors.New(`"/" cannot be an allowed directory: it would allow every file of the worker's machine`)
			}
			*out = append(*out, entry{path: abs, real: resolve(abs), exact: exact})
		}
		return nil
	}
	for _, step := range []struct {
		out   *[]entry
		paths []string
		exact bool
	}{
		{&p.write, c.Write, false}, {&p.write, c.WriteFiles, true},
		{&p.content, c.Content, false}, {&p.content, c.Write, false},
		{&p.ssh, c.SSH, false}, {&p.ssh, c.Content, false}, {&p.ssh, c.Write, false}, {&p.ssh, c.WriteFiles, true},
		{&p.deny, c.Deny, true},
	} {
		if err := add(step.out, step.paths, step.exact); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Dirs lists what each class allows, for logs and messages.
func (p *Policy) Dirs() (content, ssh, write []string) {
	if p == nil {
		return nil, nil, nil
	}
	list := func(es []entry) (out []string) {
		for _, e := range es {
			out = append(out, e.path)
		}
		return out
	}
	return list(p.content), list(p.ssh), list(p.write)
}

// Class names what a path is wanted for.
type Class int

// Classes of use.
const (
	Content Class = iota // read, and possibly sent to a host
	SSH                  // read by the SSH client only
	Write                // made or replaced
)

// Refused is the error of a path outside the policy.
type Refused struct {
	Path  string // as given
	Class Class
	Dirs  []string
}

func (e *Refused) Error() string {
	what, flag := "read", "--allow-read or --allow-path"
	switch e.Class {
	case SSH:
		what = "read SSH keys and known_hosts from"
	case Write:
		what, flag = "write", "--allow-path"
	}
	where := "none"
	if len(e.Dirs) > 0 {
		where = strings.Join(e.Dirs, ", ")
	}
	return fmt.Sprintf("%s is outside what this worker lets playbooks %s (%s); the worker's operator can add a directory with %s",
		quotePath(e.Path), what, where, flag)
}

// IsRefused reports whether err is (or wraps) a Refused.
func IsRefused(err error) bool {
	var r *Refused
	return errors.As(err, &r)
}

// Read checks that path may be read, and its content sent to a host.
func (p *Policy) Read(path string) error { return p.Check(path, Content) }

// ReadSSH checks that path may be read as an identity or known_hosts file.
func (p *Policy) ReadSSH(path string) error { return p.Check(path, SSH) }

// Write checks that path may be created or written (its directory created).
func (p *Policy) Write(path string) error { return p.Check(path, Write) }

// Check checks path for a class of use.
func (p *Policy) Check(path string, class Class) error {
	if p != nil && p.open {
		return nil
	}
	var allowed []entry
	if p != nil {
		allowed = [...][]entry{p.content, p.ssh, p.write}[class]
	}
	refused := &Refused{Path: path, Class: class}
	for _, e := range allowed {
		refused.Dirs = append(refused.Dirs, e.path)
	}
	if path == "" || strings.ContainsRune(path, 0) || !filepath.IsAbs(path) {
		return refused
	}
	clean := filepath.Clean(path)
	// First as written, before any file is looked at: a path outside every
	// allowed directory is refused without the worker's file system telling
	// anything.
	inside := false
	for _, e := range allowed {
		if e.covers(clean, e.path) || e.covers(clean, e.real) {
			inside = true
			break
		}
	}
	if !inside {
		return refused
	}
	// Then with its symbolic links followed (as far as it exists): a link inside
	// an allowed directory that leads out of it is refused alike, and so is any
	// way to a denied file.
	real := resolve(clean)
	for _, d := range p.deny {
		for _, q := range []string{clean, real} {
			if q == d.path || q == d.real || strings.HasPrefix(q, d.path+"-") || strings.HasPrefix(q, d.real+"-") {
				return refused
			}
		}
	}
	for _, e := range allowed {
		if e.covers(real, e.real) {
			return nil
		}
	}
	return refused
}

// covers reports whether the entry, at root (its path or real path), takes in p.
func (e entry) covers(p, root string) bool {
	if e.exact {
		return p == root
	}
	return under(p, root)
}

// under reports whether p is d or inside it.
func under(p, d string) bool {
	return p == d || strings.HasPrefix(p, strings.TrimSuffix(d, string(filepath.Separator))+string(filepath.Separator))
}

// resolve follows the symbolic links of the longest part of p that exists and
// appends the rest unchanged.
func resolve(p string) string {
	rest := ""
	for q := p; ; {
		if r, err := filepath.EvalSymlinks(q); err == nil {
			return filepath.Join(r, rest)
		} else if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, os.ErrInvalid) {
			// A part that cannot be looked at (permission, a loop) resolves to
			// nothing: the path then lies under no allowed directory's real path.
			return string(filepath.Separator) + "\x00unresolvable"
		}
		parent := filepath.Dir(q)
		if parent == q {
			return p
		}
		rest = filepath.Join(filepath.Base(q), rest)
		q = parent
	}
}

// quotePath quotes a path for a message, escaping control characters.
func quotePath(s string) string {
	const max = 200
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Sprintf("%q", s)
}
