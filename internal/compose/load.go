package compose

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// LoadOptions names a stack's Compose files and how to read them.
type LoadOptions struct {
	// Root is the directory every worker-side path must stay in: the playbook's
	// directory.
	Root string
	// Files are the Compose files, relative to Root (or absolute inside it),
	// merged in order as `docker stack deploy -c a -c b` merges them. Relative
	// paths inside all of them resolve against the first one's directory.
	Files []string
	// Stack is the stack's name, the namespace of its swarm objects.
	Stack string
	// Vars are the only variables ${VAR} may name (the playbook's vars); the
	// worker's environment and .env files are never read for interpolation.
	Vars map[string]string
}

// Limits of the inputs.
const (
	maxComposeFiles = 16
	maxStackName    = 40
)

// stackName is what a stack may be called: a Compose project name (compose-go
// normalises to lowercase letters, digits, - and _) that also prefixes swarm
// object names.
var stackName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Load reads, checks and converts a stack. Every problem of the files comes back
// in one ErrorList, each with its file, line and field; a problem with the
// options is a plain error.
func Load(ctx context.Context, o LoadOptions) (*Stack, error) {
	if err := checkOptions(o); err != nil {
		return nil, err
	}
	c, err := openConfinement(o.Root)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	l := &load{opts: o, c: c, rep: newReport()}
	l.sc = newScanner(c, l.rep)
	if !l.scan() {
		return nil, l.rep.list()
	}
	model, err := l.compose(ctx)
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		l.composeError(err)
		return nil, l.rep.list()
	}
	l.check(model)
	if l.rep.failed() {
		return nil, l.rep.list()
	}
	st := l.convert(model)
	if l.rep.failed() {
		return nil, l.rep.list()
	}
	return st, nil
}

// CheckStackName is nil when name can name a stack: a Compose project name that
// also prefixes the stack's swarm object names.
func CheckStackName(name string) error {
	if !stackName.MatchString(name) || len(name) > maxStackName {
		return fmt.Errorf("stack name %s: must be lowercase letters, digits, - and _ (at most %d), starting with a letter or digit", quote(name), maxStackName)
	}
	return nil
}

func checkOptions(o LoadOptions) error {
	if err := CheckStackName(o.Stack); err != nil {
		return err
	}
	switch {
	case len(o.Files) == 0:
		return errors.New("no Compose file given")
	case len(o.Files) > maxComposeFiles:
		return fmt.Errorf("%d Compose files given; the limit is %d", len(o.Files), maxComposeFiles)
	}
	return nil
}

// load is the state of one Load.
type load struct {
	opts  LoadOptions
	c     *confinement
	rep   *report
	sc    *scanner
	main  []string // the Files, root-relative
	base  string   // the first one's directory
	snap  string   // the snapshot directory, while compose-go runs
	files map[string]bool
}

// scan reads and checks every file; false when there were errors.
func (l *load) scan() bool {
	env := maps.Clone(l.opts.Vars)
	if env == nil {
		env = map[string]string{}
	}
	env["COMPOSE_PROJECT_NAME"] = l.opts.Stack // compose-go sets it too
	for i, f := range l.opts.Files {
		rel, err := l.c.rel(".", f)
		if err != nil {
			l.rep.add(&Error{File: f, Msg: err.Error()})
			continue
		}
		if ext := path.Ext(rel); ext != ".yaml" && ext != ".yml" {
			l.rep.add(&Error{File: f, Msg: "a Compose file's name ends in .yaml or .yml"})
			continue
		}
		if i == 0 {
			l.base = path.Dir(rel)
		}
		l.main = append(l.main, rel)
		if src := l.sc.read(rel, f, at{path: fieldPath{f}}); src != nil {
			l.sc.scan(src, scanCtx{kind: kindMain, base: l.base, env: env})
		}
	}
	// An include without env_file makes compose-go read .env of the included
	// project's directory: refused when the snapshot would hold one.
	for _, dir := range slices.Sorted(maps.Keys(l.sc.noEnv)) {
		if _, ok := l.sc.snapshot[path.Join(dir, ".env")]; ok {
			l.sc.errAtRef(l.sc.noEnv[dir], "docker compose would read %s for this include without saying so: name it in env_file (or write env_file: /dev/null)", quote(path.Join(dir, ".env")))
		}
	}
	l.files = map[string]bool{}
	for _, s := range l.sc.sources {
		l.files[s.rel] = true
	}
	return !l.rep.failed()
}

// compose runs compose-go over a snapshot: a fresh directory holding exactly the
// files the scan read, at their root-relative paths. compose-go reads include,
// extends, env and label files itself; in the snapshot it can find nothing the
// scan did not confine, and no .env that no one named.
func (l *load) compose(ctx context.Context) (*types.Project, error) {
	dir, err := os.MkdirTemp("", "clusterflow-stack-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	l.snap = dir
	for rel, data := range l.sc.snapshot {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return nil, err
		}
	}
	details := types.ConfigDetails{
		WorkingDir:  filepath.Join(dir, filepath.FromSlash(l.base)),
		Environment: maps.Clone(l.opts.Vars),
	}
	if details.Environment == nil {
		details.Environment = types.Mapping{}
	}
	for _, rel := range l.main {
		details.ConfigFiles = append(details.ConfigFiles, types.ConfigFile{
			Filename: filepath.Join(dir, filepath.FromSlash(rel)), Content: l.sc.snapshot[rel]})
	}
	return loadRecovered(ctx, details, func(o *loader.Options) {
		o.SetProjectName(l.opts.Stack, true)
		o.SkipConsistencyCheck = true // check() does it, with lines
		o.Interpolate.Substitute = strictSubstitute
		o.ResourceLoaders = []loader.ResourceLoader{snapshotGuard{dir}}
	})
}

// errComposePanic is what a panic inside compose-go becomes. Its value is not
// shown: it could hold a value of the files.
var errComposePanic = errors.New("compose-go failed on these files (it panicked): check the type of each value against the Compose Specification")

// loadRecovered runs compose-go, which has panicked on input it should refuse
// (v2.16.2: an env_file entry without a path), and turns a panic into an error.
func loadRecovered(ctx context.Context, details types.ConfigDetails, opt func(*loader.Options)) (p *types.Project, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, errComposePanic
		}
	}()
	return loader.LoadWithContext(ctx, details, opt)
}

// snapshotGuard refuses an include or extends path that leaves the snapshot
// (an absolute path elsewhere). The scan refuses these first; this keeps
// compose-go from opening one should the two ever read a file differently.
type snapshotGuard struct{ dir string }

func (g snapshotGuard) Accept(p string) bool {
	if !filepath.IsAbs(p) {
		return false
	}
	r, err := filepath.Rel(g.dir, p)
	return err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator))
}

func (g snapshotGuard) Load(context.Context, string) (string, error) {
	return "", errors.New("a path is not inside the playbook directory")
}

func (g snapshotGuard) Dir(p string) string { return filepath.Dir(p) }

// rel is a snapshot path as a root-relative path; false when it is not inside.
func (l *load) rel(p string) (string, bool) {
	r, err := filepath.Rel(l.snap, p)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) || filepath.IsAbs(r) {
		return "", false
	}
	return filepath.ToSlash(r), true
}

// errAt reports a problem at a field of the merged model: the line is that of
// the file that sets the field last (or of the deepest part of the path found).
func (l *load) errAt(parts []string, format string, args ...any) {
	l.rep.add(l.at(parts, fmt.Sprintf(format, args...)))
}

// located reports whether every part of parts is found in some file.
func (l *load) located(parts []string) bool {
	for _, src := range l.sc.sources {
		for _, doc := range src.docs {
			if _, k := locate(doc, parts); k == len(parts) {
				return true
			}
		}
	}
	return false
}

func (l *load) at(parts []string, msg string) *Error {
	e := &Error{Field: fieldPath(parts).String(), Msg: msg}
	best := -1
	for i := len(l.sc.sources) - 1; i >= 0; i-- {
		src := l.sc.sources[i]
		for _, doc := range src.docs {
			n, k := locate(doc, parts)
			if k > best && n != nil {
				best, e.File, e.Line, e.Column = k, src.rel, n.Line, n.Column
			}
		}
	}
	if e.File == "" && len(l.main) > 0 {
		e.File = l.main[0]
	}
	return e
}

// composeError turns compose-go's error into Errors with positions. Its
// messages name snapshot paths: they are shown root-relative. A message that
// names an env or label file is replaced, as it might quote the file.
func (l *load) composeError(err error) {
	var leaves []error
	var flatten func(error)
	flatten = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				flatten(e)
			}
			return
		}
		leaves = append(leaves, err)
	}
	flatten(err)
	for _, e := range leaves {
		for _, line := range strings.Split(e.Error(), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "decoding failed due to") {
				l.rep.add(l.composeLine(line))
			}
		}
	}
	if !l.rep.failed() {
		l.rep.add(&Error{File: l.main[0], Msg: "compose-go refused the stack without saying why"})
	}
}

func (l *load) composeLine(msg string) *Error {
	file := ""
	msg = strings.ReplaceAll(msg, l.snap+string(filepath.Separator), "")
	for rel := range l.sc.snapshot {
		if !l.files[rel] && strings.Contains(msg, rel) {
			return &Error{File: rel, Msg: "cannot be read as an env file (KEY=VALUE lines)"}
		}
	}
	for _, prefix := range []string{"validating ", "failed to parse "} {
		if rest, ok := strings.CutPrefix(msg, prefix); ok {
			if f, m, ok := strings.Cut(rest, ": "); ok && l.files[f] {
				file, msg = f, m
			}
		}
	}
	var field string
	switch {
	case strings.HasPrefix(msg, "error while interpolating "):
		rest := strings.TrimPrefix(msg, "error while interpolating ")
		if f, m, ok := strings.Cut(rest, ": "); ok {
			field, msg = f, m
		}
	case strings.HasPrefix(msg, "'"):
		if m := errorPath.FindStringSubmatch(msg); m != nil {
			field, msg = m[1], strings.TrimSpace(strings.TrimPrefix(msg, m[0]))
		}
	default:
		// "services.web.ports must be a array", "secrets.pw: one of ..."
		if f, m, ok := strings.Cut(msg, " "); ok && errorPath.MatchString(f) {
			f = strings.TrimSuffix(f, ":")
			if parts := splitErrorPath(f); len(parts) > 1 && l.located(parts) {
				field, msg = f, m
			}
		}
	}
	if field == "" {
		if file == "" {
			file = l.main[0]
		}
		return &Error{File: file, Msg: msg}
	}
	parts := splitErrorPath(field)
	e := l.at(parts, msg)
	return e
}
