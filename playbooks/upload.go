package playbooks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// readUpload reads the fields of an upload step.
func readUpload(f *file, m *fields, s *Step, c *stepContext) {
	u := &UploadStep{Mode: 0o644}
	s.Upload = u
	if n, p := m.get("template"); n != nil {
		u.Template, _ = f.boolean(n, p)
	}
	if n, p := m.get("src"); n != nil {
		if src, ok := f.uploadSource(n, p, u.Template); ok {
			u.Src = src
			if u.Template {
				f.checkTemplate(n, p, s, c)
			}
		}
	}
	if n, p := m.get("dest"); n != nil {
		u.Dest, _ = f.nonEmptyStr(n, p)
	}
	if n, p := m.get("mode"); n != nil {
		u.Mode, _ = f.mode(n, p)
	}
	if n, p := m.get("owner"); n != nil {
		u.Owner, _ = f.str(n, p)
	}
	if n, p := m.get("group"); n != nil {
		u.Group, _ = f.str(n, p)
	}
}

// Normalize checks an upload step's settings. Mode 0 stands for the default, 0644.
func (u *UploadStep) Normalize(Scope) Problems {
	var ps Problems
	switch {
	case u.Src == "":
		ps.add("src", "is required; give the local file to upload, relative to the playbook")
	case !filepath.IsAbs(u.Src):
		ps.add("src", "must be an absolute path on the worker, got %s", quote(u.Src))
	}
	switch {
	case u.Dest == "":
		ps.add("dest", "is required; give the absolute path of the file on the hosts")
	case strings.HasPrefix(u.Dest, "/") && strings.HasSuffix(u.Dest, "/"):
		ps.add("dest", "must be the path of a file, not of a directory (it ends with /); write the file name too, e.g. %s", quote(u.Dest+"name"))
	default:
		ps.remotePath("dest", u.Dest)
	}
	if u.Mode > maxMode {
		ps.add("mode", "must be at most 07777 (permission bits only), got %s", quote(fmt.Sprintf("%#o", u.Mode)))
	}
	ps.account("owner", "user", u.Owner)
	ps.account("group", "group", u.Group)
	return ps
}

// uploadSource checks an upload's src: a regular file inside the directory of the
// playbook (symbolic links included), of at most 64 MiB for a template (rendered in
// memory) or 1 TiB for a file (streamed). It returns the absolute path.
//
// Keeping sources inside the playbook's directory matters for playbooks sent inline
// from the Web UI: they must not be able to copy arbitrary worker files to a host.
func (f *file) uploadSource(n *yaml.Node, path string, template bool) (string, bool) {
	src, ok := f.nonEmptyStr(n, path)
	if !ok {
		return "", false
	}
	clean := filepath.Clean(src)
	switch {
	case filepath.IsAbs(src) || strings.HasPrefix(src, "~"):
		f.errorAt(n, path, "must be a path relative to the playbook's directory (%s), got %s", f.dir, quote(src))
		return "", false
	case clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)):
		f.errorAt(n, path, "must stay inside the playbook's directory (%s); %s leads out of it", f.dir, quote(src))
		return "", false
	}
	abs, err := f.allowed(filepath.Join(f.dir, clean), workerfs.Content)
	if err != nil {
		f.errorAt(n, path, "%v", err)
		return "", false
	}
	st, err := os.Stat(abs)
	if err == nil {
		err = regularFile(st)
	}
	if err != nil {
		f.errorAt(n, path, "cannot upload %s (%s): %v", quote(src), abs, fsProblem(err))
		return "", false
	}
	limit, what := int64(maxFileUploadSize), "upload"
	if template {
		limit, what = maxUploadSize, "render the template"
	}
	if st.Size() > limit {
		f.errorAt(n, path, "cannot %s %s: %v", what, quote(src), tooLarge(st.Size(), limit))
		return "", false
	}
	if !insideDir(f.dir, abs) {
		f.errorAt(n, path, "%s is a symbolic link that leads out of the playbook's directory (%s)", quote(src), f.dir)
		return "", false
	}
	return abs, true
}

// checkTemplate parses the template s.Upload.Src and renders it for every target host,
// throwing the output away, so that a syntax error, a field that does not exist
// ({{.Host.Port}}) or a var that is not defined is reported now, at the src line,
// rather than on the hosts in the middle of a run.
func (f *file) checkTemplate(n *yaml.Node, path string, s *Step, c *stepContext) {
	src := s.Upload.Src
	text, err := readLimited(src, maxUploadSize)
	if err != nil {
		f.errorAt(n, path, "cannot read %s: %v", src, err)
		return
	}
	tmpl, err := NewTemplate(filepath.Base(src), string(text))
	if err != nil {
		f.errorAt(n, path, "is not a valid template: %v", err)
		return
	}
	if !c.varsOK {
		return // spec.vars has errors; rendering would only repeat them
	}
	// Both budgets are shared by all the hosts: once one is spent, enough was checked.
	left := &countdown{n: maxUploadSize}
	deadline := time.Now().Add(TemplateBudget)
	longest := len(c.vars)
	for _, name := range s.Hosts {
		longest = max(longest, len(c.inv.byName[name].host.Groups))
	}
	if err := CheckTemplateData(tmpl, longest); err != nil {
		f.errorAt(n, path, "is not a valid template for this playbook's vars and groups: %v", err)
		return
	}
	for i, name := range s.Hosts {
		data := NewTemplateData(c.inv.byName[name].host, c.vars)
		budget := time.Until(deadline)
		if budget <= 0 && i > 0 {
			return
		}
		err := RenderTemplate(tmpl, data, left, left.n, max(budget, 0))
		switch {
		case errors.Is(err, ErrTemplateBudget) && i > 0:
			return
		case err != nil:
			f.errorAt(n, path, "template fails for host %s: %v", quote(name), err)
			return
		}
	}
}

// countdown discards what is written to it, counting down n.
type countdown struct{ n int64 }

func (c *countdown) Write(p []byte) (int, error) {
	c.n -= int64(len(p))
	return len(p), nil
}

// insideDir reports whether path, with symbolic links resolved, is inside dir.
func insideDir(dir, path string) bool {
	realDir, err1 := filepath.EvalSymlinks(dir)
	realPath, err2 := filepath.EvalSymlinks(path)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(realDir, realPath)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
