package playbooks

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// This file holds the rules of the paths that the workload kinds (deployStack,
// buildImage, registryAuth.passwordFile) name on the worker's side: each is
// relative to the step's dir, the playbook's directory, and must stay inside it.
// The parser checks that they exist through an os.Root of that directory (a
// symbolic link that leads out is refused like a ".."); the activities open
// them the same way (internal/compose, activities/workerdir.go).

// dirPath checks a path relative to a step's dir: clean, relative, not leaving
// the directory. Normalize calls it on JSON input too.
func (ps *Problems) dirPath(field, p string) {
	switch {
	case p == "":
		ps.add(field, "must not be empty")
	case strings.ContainsRune(p, 0):
		ps.add(field, "must not contain a NUL byte")
	case filepath.IsAbs(p) || strings.HasPrefix(p, "~"):
		ps.add(field, "must be a path relative to the playbook's directory, got %s", quote(p))
	case p != path.Clean(p):
		ps.add(field, "must be a clean relative path (no ./, // or trailing /), such as %s", quote(path.Clean(p)))
	case p == ".." || strings.HasPrefix(p, "../"):
		ps.add(field, "must stay inside the playbook's directory; %s leads out of it", quote(p))
	}
}

// dirRel reads a path relative to the playbook's directory and returns it clean
// and slash-separated; a path that leaves the directory is reported.
func (f *file) dirRel(n *yaml.Node, p string) (string, bool) {
	s, ok := f.nonEmptyStr(n, p)
	if !ok {
		return "", false
	}
	var ps Problems
	clean := path.Clean(filepath.ToSlash(s))
	if !filepath.IsAbs(s) {
		s = clean
	}
	ps.dirPath("", s)
	if len(ps) > 0 {
		f.errorAt(n, p, "%s", ps[0].Msg)
		return "", false
	}
	return s, true
}

// statUnder checks that rel exists inside the playbook's directory as a regular
// file (dir false) or a directory, following symbolic links that stay inside.
func (f *file) statUnder(n *yaml.Node, p, rel string, dir bool) bool {
	if _, err := f.allowed(f.dir, workerfs.Content); err != nil {
		f.errorAt(n, p, "the playbook's directory: %v", err)
		return false
	}
	root, err := os.OpenRoot(f.dir)
	if err != nil {
		f.errorAt(n, p, "cannot open the playbook's directory %s: %v", f.showDir, fsProblem(err))
		return false
	}
	defer root.Close()
	st, err := root.Stat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f.errorAt(n, p, "%s does not exist in the playbook's directory (%s)", quote(rel), f.showDir)
		return false
	case errors.Is(err, fs.ErrPermission):
		f.errorAt(n, p, "%s cannot be read (permission denied)", quote(rel))
		return false
	case err != nil:
		f.errorAt(n, p, "%s is not inside the playbook's directory (%s): a symbolic link leads out of it", quote(rel), f.showDir)
		return false
	case dir && !st.IsDir():
		f.errorAt(n, p, "%s is not a directory", quote(rel))
		return false
	case !dir && !st.Mode().IsRegular():
		f.errorAt(n, p, "%s is not a regular file", quote(rel))
		return false
	}
	return true
}
