package playbooks

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Step defaults and limits.
const (
	defaultParallel       = 10
	defaultMaxFailPercent = 0
	defaultTimeout        = 10 * time.Minute
	defaultAttempts       = 3
	maxStepName           = 100 // characters
	maxSteps              = 200 // per playbook
)

// commonStepFields are the fields every step has, whatever its kind.
var commonStepFields = []string{"name", "kind", "hosts", "parallel", "maxFailPercent", "timeout", "attempts"}

// stepKind describes a step kind: its own fields, which sit flat on the step next to
// the common ones, and how to read them into the Step.
type stepKind struct {
	fields []string
	read   func(f *file, m *fields, s *Step, c *stepContext)
}

// stepContext is what kinds may need beyond the step itself. By the time steps are
// read, the inventory is resolved and the step's Hosts are set.
type stepContext struct {
	inv    *inventory
	vars   map[string]string
	varsOK bool // spec.vars is valid (or absent)
}

// stepKinds is the closed list of step kinds. To add one: a Kind constant and a
// pointer field on Step in plan.go, an entry here with its read function, and its
// fields in doc.go.
var stepKinds = map[string]stepKind{
	KindRun:            {fields: []string{"command", "creates", "unless", "env", "dir", "exitCodes"}, read: readRun},
	KindUpload:         {fields: []string{"src", "template", "dest", "mode", "owner", "group"}, read: readUpload},
	KindDistributeKeys: {fields: []string{"clusterKey", "user", "mesh", "rotate"}, read: readDistributeKeys},
	KindInstallDocker: {fields: []string{"source", "version", "mirror", "packages", "daemonConfig", "users"},
		read: readInstallDocker},
	KindSwarmInit: {fields: []string{"managers", "advertiseAddr", "listenAddr", "dataPathAddr", "labels", "networks"},
		read: readSwarmInit},
	KindPromote:    {fields: []string{"manager"}, read: readNode},
	KindDemote:     {fields: []string{"manager"}, read: readNode},
	KindDrain:      {fields: []string{"manager"}, read: readNode},
	KindActivate:   {fields: []string{"manager"}, read: readNode},
	KindRemoveNode: {fields: []string{"manager", "force"}, read: readNode},
	KindConsulBootstrap: {fields: []string{"servers", "source", "binary", "sha256", "sha256sums", "url", "version",
		"datacenter", "gossipKeyFile", "bindInterface"}, read: readConsul},
	KindRotateCA: {fields: []string{"manager", "caCert", "caKey", "nodeCertExpiry", "rotateWorkerToken", "rotateManagerToken"},
		read: readRotateCA},
	KindCheckCertificates: {fields: []string{"manager", "minValidity", "action", "nodeCertExpiry"}, read: readCheckCertificates},
	KindDeployService:     {fields: serviceFields, read: readService},
	KindUpdateService:     {fields: serviceFields, read: readService},
	KindRollingNodeUpgrade: {fields: []string{"source", "version", "mirror", "packages", "daemonConfig", "users",
		"manager", "maxUnavailable", "approval", "backup"}, read: readRollingUpgrade},
}

// sortedKinds returns the names of the step kinds, sorted.
func sortedKinds() []string {
	names := make([]string, 0, len(stepKinds))
	for k := range stepKinds {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// kindNames lists the step kinds for messages.
func kindNames() string { return strings.Join(sortedKinds(), ", ") }

// kindsWithField names the kinds that have field, sorted.
func kindsWithField(field string) []string {
	var kinds []string
	for k, sk := range stepKinds {
		if slices.Contains(sk.fields, field) {
			kinds = append(kinds, k)
		}
	}
	slices.Sort(kinds)
	return kinds
}

// steps reads spec.steps.
func (f *file) steps(n *yaml.Node, path string, c *stepContext) []Step {
	items, ok := f.list(n, path, "steps")
	if !ok {
		return nil
	}
	switch {
	case len(items) == 0:
		f.errorAt(n, path, "must list at least one step")
		return nil
	case len(items) > maxSteps:
		f.errorAt(n, path, "has %d steps; the limit is %d", len(items), maxSteps)
		return nil
	}
	steps := make([]Step, 0, len(items))
	names := map[string]*yaml.Node{}
	for i, item := range items {
		if s, ok := f.step(item, indexPath(path, i), c, names); ok {
			steps = append(steps, s)
		}
	}
	return steps
}

// step reads one step. names holds the step names seen so far, to find duplicates.
func (f *file) step(n *yaml.Node, path string, c *stepContext, names map[string]*yaml.Node) (Step, bool) {
	m := f.mapping(n, path)
	if m == nil {
		return Step{}, false
	}
	s := Step{
		Parallel:       defaultParallel,
		MaxFailPercent: defaultMaxFailPercent,
		Timeout:        Duration(defaultTimeout),
		Attempts:       defaultAttempts,
	}

	// The kind comes first: it decides which other fields are allowed.
	var kind *stepKind
	if n, p := m.get("kind"); n == nil {
		f.missing(m, "kind", "kinds are: %s", kindNames())
	} else if k, ok := f.str(n, p); ok {
		if sk, known := stepKinds[k]; known {
			kind, s.Kind = &sk, k
		} else {
			f.errorAt(n, p, "unknown step kind %s; kinds are: %s", quote(k), kindNames())
		}
	}
	f.checkStepKeys(m, kind, s.Kind)

	if n, p := m.get("name"); n == nil {
		f.missing(m, "name", "each step needs a unique name")
	} else if name, ok := f.stepName(n, p); ok {
		if first, dup := names[name]; dup {
			f.errorAt(n, p, "duplicate step name %s (first used at line %d)", quote(name), first.Line)
		} else {
			names[name] = n
		}
		s.Name = name
	}
	if n, p := m.get("hosts"); n == nil {
		f.missing(m, "hosts", `write "all", a host or group name, or a list of them`)
	} else if sel, ok := f.selectors(n, p); ok {
		s.Hosts = c.inv.resolve(f, n, p, sel)
	}
	if n, p := m.get("parallel"); n != nil {
		s.Parallel, _ = f.integer(n, p, 1, 1000)
	}
	if n, p := m.get("maxFailPercent"); n != nil {
		s.MaxFailPercent, _ = f.integer(n, p, 0, 100)
	}
	if n, p := m.get("timeout"); n != nil {
		d, _ := f.duration(n, p, time.Second, 24*time.Hour)
		s.Timeout = Duration(d)
	}
	if n, p := m.get("attempts"); n != nil {
		s.Attempts, _ = f.integer(n, p, 1, 100)
	}
	if kind != nil {
		kind.read(f, m, &s, c)
	}
	return s, true
}

// checkStepKeys reports fields that are neither common nor of the step's kind. When
// the kind is missing or unknown, fields of other kinds are let through: the kind is
// already reported and they may well be right.
func (f *file) checkStepKeys(m *fields, kind *stepKind, kindName string) {
	allowed := slices.Clone(commonStepFields)
	if kind != nil {
		allowed = append(allowed, kind.fields...)
	} else {
		for _, k := range sortedKinds() {
			allowed = append(allowed, stepKinds[k].fields...)
		}
	}
	for _, k := range m.keys {
		key, p := k.Value, keyPath(m.path, k.Value)
		switch {
		case slices.Contains(allowed, key):
		case len(kindsWithField(key)) > 0:
			f.errorAt(k, p, "field %s is not allowed for kind %s (it belongs to kind %s)", quote(key), kindName, strings.Join(kindsWithField(key), ", "))
		default:
			f.errorAt(k, p, "%s", f.unknownField(key, allowed))
		}
	}
}

// stepName reads a step name: free text for people, on one line.
func (f *file) stepName(n *yaml.Node, path string) (string, bool) {
	s, ok := f.nonEmptyStr(n, path)
	switch {
	case !ok:
		return "", false
	case utf8.RuneCountInString(s) > maxStepName:
		f.errorAt(n, path, "must be at most %d characters, got %d", maxStepName, utf8.RuneCountInString(s))
	case strings.ContainsFunc(s, unicode.IsControl):
		f.errorAt(n, path, "must be one line of text without control characters")
	case strings.TrimSpace(s) != s:
		f.errorAt(n, path, "must not start or end with spaces")
	default:
		return s, true
	}
	return s, false
}

// selectors reads a step's hosts: "all", one host or group name, or a list of them.
func (f *file) selectors(n *yaml.Node, path string) ([]selector, bool) {
	var entries []*yaml.Node
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag != "!!null":
		entries = []*yaml.Node{n}
	case n.Kind == yaml.SequenceNode:
		if len(n.Content) == 0 {
			f.errorAt(n, path, `must name at least one host or group, or "all"`)
			return nil, false
		}
		entries = n.Content
	default:
		f.errorAt(n, path, `must be "all", a host or group name, or a list of them; got %s`, describe(n))
		return nil, false
	}
	sel := make([]selector, 0, len(entries))
	ok := true
	for i, e := range entries {
		p := path
		if n.Kind == yaml.SequenceNode {
			p = indexPath(path, i)
		}
		name, good := f.nonEmptyStr(e, p)
		if good {
			sel = append(sel, selector{name, e, p})
		}
		ok = ok && good
	}
	return sel, ok
}

// readRun reads the fields of a run step.
func readRun(f *file, m *fields, s *Step, _ *stepContext) {
	r := &RunStep{ExitCodes: []int{0}}
	s.Run = r
	if n, p := m.get("command"); n == nil {
		f.missing(m, "command", "give the command as an argv list, e.g. [uname, -a]")
	} else {
		r.Command, _ = f.argv(n, p)
	}
	if n, p := m.get("creates"); n != nil {
		r.Creates, _ = f.remotePath(n, p)
	}
	if n, p := m.get("unless"); n != nil {
		r.Unless, _ = f.argv(n, p)
	}
	if n, p := m.get("env"); n != nil {
		r.Env, _ = f.stringMap(n, p)
	}
	if n, p := m.get("dir"); n != nil {
		r.Dir, _ = f.remotePath(n, p)
	}
	if n, p := m.get("exitCodes"); n != nil {
		r.ExitCodes, _ = f.exitCodes(n, p)
	}
}

// argv reads a command as a non-empty list of non-empty strings.
func (f *file) argv(n *yaml.Node, path string) ([]string, bool) {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		f.errorAt(n, path, `must be a list of strings (argv), not a shell line; write [sh, -c, "..."] if you need a shell`)
		return nil, false
	}
	if n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		f.errorAt(n, path, "must not be empty; give at least the program to run, e.g. [uname, -a]")
		return nil, false
	}
	return f.stringList(n, path)
}

// exitCodes reads a non-empty list of exit statuses, 0..255.
func (f *file) exitCodes(n *yaml.Node, path string) ([]int, bool) {
	items, ok := f.list(n, path, "exit codes")
	if !ok {
		return nil, false
	}
	if len(items) == 0 {
		f.errorAt(n, path, "must list at least one exit code; leave it out for the default [0]")
		return nil, false
	}
	codes := make([]int, 0, len(items))
	for i, item := range items {
		c, good := f.integer(item, indexPath(path, i), 0, 255)
		codes = append(codes, c)
		ok = ok && good
	}
	return codes, ok
}

// readUpload reads the fields of an upload step.
func readUpload(f *file, m *fields, s *Step, c *stepContext) {
	u := &UploadStep{Mode: 0o644}
	s.Upload = u
	if n, p := m.get("template"); n != nil {
		u.Template, _ = f.boolean(n, p)
	}
	if n, p := m.get("src"); n == nil {
		f.missing(m, "src", "give the local file to upload, relative to the playbook")
	} else if src, ok := f.uploadSource(n, p, u.Template); ok {
		u.Src = src
		if u.Template {
			f.checkTemplate(n, p, s, c)
		}
	}
	if n, p := m.get("dest"); n == nil {
		f.missing(m, "dest", "give the absolute path of the file on the hosts")
	} else if d, ok := f.remotePath(n, p); ok {
		if strings.HasSuffix(d, "/") {
			f.errorAt(n, p, "must be the path of a file, not of a directory (it ends with /); write the file name too, e.g. %s", quote(d+"name"))
		}
		u.Dest = d
	}
	if n, p := m.get("mode"); n != nil {
		u.Mode, _ = f.mode(n, p)
	}
	if n, p := m.get("owner"); n != nil {
		u.Owner = f.account(n, p, "user")
	}
	if n, p := m.get("group"); n != nil {
		u.Group = f.account(n, p, "group")
	}
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
	abs := filepath.Join(f.dir, clean)
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
	out := &limitWriter{n: maxUploadSize} // shared: enough checking once it is spent
	for i, name := range s.Hosts {
		err := tmpl.Execute(out, NewTemplateData(c.inv.byName[name].host, c.vars))
		switch {
		case errors.Is(err, errTooMuchOutput) && i > 0:
			return
		case err != nil:
			f.errorAt(n, path, "template fails for host %s: %v", quote(name), err)
			return
		}
	}
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
