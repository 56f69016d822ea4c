package compose

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// confinement is the directory every worker-side path of a stack must stay in
// (the playbook's directory). Paths inside it are root-relative, slash-separated
// and clean ("stacks/web/compose.yaml"); files are opened through an os.Root, so
// a symbolic link that leads out of the directory is refused like a "..".
type confinement struct {
	dir  string // absolute and clean
	root *os.Root
}

func openConfinement(dir string) (*confinement, error) {
	if dir == "" {
		return nil, errors.New("no root directory given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("open the root directory: %w", err)
	}
	return &confinement{dir: abs, root: r}, nil
}

func (c *confinement) Close() error { return c.root.Close() }

// outside is the one message for a path that leaves the root, whether or not
// something exists there.
func outside(p string) string {
	return fmt.Sprintf("%s is not inside the playbook directory", quote(p))
}

// rel resolves p, written in a file whose relative paths are relative to the
// root-relative directory base, to a root-relative path. It refuses what would
// leave the root, and what clusterflow does not expand (~, a NUL byte).
func (c *confinement) rel(base, p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("is empty")
	case strings.ContainsRune(p, 0):
		return "", errors.New("must not contain a NUL byte")
	case strings.HasPrefix(p, "~"):
		return "", fmt.Errorf("%s: ~ is not expanded (it would name the worker's home directory); write the path relative to the file", quote(p))
	}
	var r string
	if filepath.IsAbs(p) {
		var err error
		if r, err = filepath.Rel(c.dir, filepath.Clean(p)); err != nil {
			return "", errors.New(outside(p))
		}
		r = filepath.ToSlash(r)
	} else {
		r = path.Join(base, filepath.ToSlash(p))
	}
	r = path.Clean(r)
	if r == ".." || strings.HasPrefix(r, "../") {
		return "", errors.New(outside(p))
	}
	return r, nil
}

// statFile checks that rel (as written: shown) is a regular file inside the root,
// following symbolic links that stay inside.
func (c *confinement) statFile(rel, shown string) error {
	fi, err := c.root.Stat(rel)
	if err != nil {
		return c.fsError(err, shown)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", quote(shown))
	}
	return nil
}

// readFile reads a regular file inside the root, at most max bytes. A FIFO or a
// device is refused without blocking on it.
func (c *confinement) readFile(rel, shown string, max int64) ([]byte, error) {
	f, err := c.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, c.fsError(err, shown)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, c.fsError(err, shown)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", quote(shown))
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", quote(shown), max)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s cannot be read", quote(shown))
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", quote(shown), max)
	}
	return data, nil
}

// fsError words an os.Root error without the worker's absolute path. Any error
// but "does not exist" and "permission denied" is the root refusing a path that
// leads out of it (os.Root has no exported error for that).
func (c *confinement) fsError(err error, shown string) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s does not exist", quote(shown))
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s cannot be read (permission denied)", quote(shown))
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%s does not exist (a part of it is not a directory)", quote(shown))
	}
	return errors.New(outside(shown))
}
