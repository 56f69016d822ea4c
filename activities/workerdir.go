package activities

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/clusterflow/clusterflow/internal/rules"
	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// This file is the one place, besides internal/compose, where the workload
// activities open files of the worker: a step's dir (the playbook's directory) as
// an os.Root, so that no path, "..", or symbolic link leads out of it. It serves
// buildImage's build context and registryAuth.passwordFile. (Compose files and
// secret and config sources are read by internal/compose, rooted the same way.)
// Messages name paths as the step wrote them, relative to the dir, and never
// quote a file's content.

// playbookDir is a step's dir, opened.
type playbookDir struct {
	root *os.Root
}

func openPlaybookDir(files *workerfs.Policy, dir string) (*playbookDir, error) {
	if !rules.WorkerPath(dir) {
		return nil, invalidInput(fmt.Sprintf("the step's dir %q must be %s on the worker", dir, rules.WorkerPathRule))
	}
	if err := files.Read(dir); err != nil {
		return nil, invalidInput("the step's dir: " + err.Error())
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, invalidInput(fmt.Sprintf("the playbook's directory cannot be opened on this worker: %v", pathProblem(err)))
	}
	return &playbookDir{root: r}, nil
}

func (d *playbookDir) Close() error { return d.root.Close() }

// pathProblem words an os.Root error without the worker's absolute path.
func pathProblem(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "does not exist"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case errors.Is(err, syscall.ENOTDIR):
		return "a part of it is not a directory"
	}
	return "it is not inside the playbook's directory (a symbolic link leads out of it)"
}

// readSmall reads a regular file of at most max bytes (a FIFO or device is
// refused without blocking on it).
func (d *playbookDir) readSmall(rel string, max int64) ([]byte, error) {
	f, err := d.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, invalidInput(fmt.Sprintf("%s: %s", rel, pathProblem(err)))
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return nil, invalidInput(fmt.Sprintf("%s: %s", rel, pathProblem(err)))
	case !st.Mode().IsRegular():
		return nil, invalidInput(rel + " is not a regular file")
	case st.Size() > max:
		return nil, invalidInput(fmt.Sprintf("%s is larger than %d bytes", rel, max))
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil || int64(len(data)) > max {
		return nil, invalidInput(rel + " cannot be read whole")
	}
	return data, nil
}

// Limits of a build context.
const (
	maxContextFiles = 20000
	maxContextBytes = 2 << 30
)

// contextEntry is one file, directory or symbolic link of a build context.
type contextEntry struct {
	name string // slash-separated, relative to the context
	mode fs.FileMode
	size int64
	link string
}

// contextFiles lists a build context (the directory rel) in a fixed order, with
// what a tar of it holds: regular files, directories and symbolic links (kept
// as links, never followed). Other file types are refused.
func (d *playbookDir) contextFiles(rel string) ([]contextEntry, error) {
	cfs := d.root.FS()
	var out []contextEntry
	var total int64
	err := fs.WalkDir(cfs, rel, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return invalidInput(fmt.Sprintf("build context %s: %s: %s", rel, p, pathProblem(err)))
		}
		name := strings.TrimPrefix(strings.TrimPrefix(p, rel), "/")
		if name == "" {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return invalidInput(fmt.Sprintf("build context %s: %s: %s", rel, name, pathProblem(err)))
		}
		ce := contextEntry{name: name, mode: info.Mode()}
		switch t := info.Mode().Type(); {
		case t == 0:
			ce.size = info.Size()
			total += ce.size
		case t == fs.ModeDir:
		case t == fs.ModeSymlink:
			ce.link, err = d.root.Readlink(p)
			if err != nil {
				return invalidInput(fmt.Sprintf("build context %s: %s: %s", rel, name, pathProblem(err)))
			}
		default:
			return invalidInput(fmt.Sprintf("build context %s: %s is not a regular file, directory or symbolic link", rel, name))
		}
		out = append(out, ce)
		switch {
		case len(out) > maxContextFiles:
			return invalidInput(fmt.Sprintf("build context %s has more than %d files", rel, maxContextFiles))
		case total > maxContextBytes:
			return invalidInput(fmt.Sprintf("build context %s is larger than %d MiB", rel, maxContextBytes>>20))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b contextEntry) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// contextEpoch is the modification time every entry of a context tar carries:
// the same files make the same tar, and so the same layers, on every worker.
var contextEpoch = time.Unix(0, 0)

// writeContext writes the context as a tar to w (ustar/PAX headers, mode bits
// kept, owner root, times fixed).
func (d *playbookDir) writeContext(w io.Writer, rel string, entries []contextEntry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: int64(e.mode.Perm()), ModTime: contextEpoch, Format: tar.FormatPAX}
		switch e.mode.Type() {
		case fs.ModeDir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, e.name+"/"
		case fs.ModeSymlink:
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.link
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, e.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		f, err := d.root.Open(path.Join(rel, e.name))
		if err != nil {
			return invalidInput(fmt.Sprintf("build context %s: %s: %s", rel, e.name, pathProblem(err)))
		}
		n, err := io.Copy(tw, io.LimitReader(f, e.size))
		f.Close()
		if err != nil {
			return err
		}
		if n != e.size {
			return invalidInput(fmt.Sprintf("build context %s: %s changed while it was read", rel, e.name))
		}
	}
	return tw.Close()
}

// contextDigest is the digest of the context's tar and the build's settings:
// what decides the image.
func (d *playbookDir) contextDigest(rel string, entries []contextEntry, settings []string) (string, error) {
	h := sha256.New()
	for _, s := range settings {
		fmt.Fprintf(h, "%d:%s\n", len(s), s)
	}
	if err := d.writeContext(h, rel, entries); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
