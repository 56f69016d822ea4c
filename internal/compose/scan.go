package compose

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"
)

// The scan reads every file a stack names, before compose-go sees any of them:
// the Compose files given, the files they include, the files their services
// extend, and the env and label files, each through the confinement (clean
// root-relative paths, no escape by ".." or by a symbolic link). It also checks
// what needs a line: every key against the supported list, every ${VAR} against
// the variables, the paths, the short port and volume syntax. What it read is
// the only thing compose-go will read (see snapshot in load.go).

// Limits of one Load.
const (
	maxFileSize = 1 << 20 // a Compose, env or label file
	maxFiles    = 64      // files read, of every kind
	maxVisits   = 1 << 20 // YAML nodes walked, aliases expanded
)

type fileKind int

const (
	kindMain     fileKind = iota // a file given to Load
	kindIncluded                 // named by a top-level include
	kindExtends                  // named by a service's extends.file
)

// source is one Compose file as read, with its documents' nodes.
type source struct {
	rel  string
	docs []*yaml.Node // each document's top-level node
}

// scanCtx is how a file's contents are read: relative paths resolve against
// base (a root-relative directory), ${VAR} against env.
type scanCtx struct {
	kind fileKind
	base string
	env  map[string]string
}

type scanner struct {
	c        *confinement
	rep      *report
	sources  []*source         // Compose files in the order read
	scanned  map[string]bool   // rel|kind|base already scanned
	snapshot map[string][]byte // root-relative path -> content: all compose-go may read
	objects  map[string]bool   // secret and config files checked (root-relative)
	noEnv    map[string]at     // include project dirs with no env_file -> the include
	visits   int
	tooDeep  bool
}

// at is a place in a source, for an error found later.
type at struct {
	src  *source
	node *yaml.Node
	path fieldPath
}

func newScanner(c *confinement, rep *report) *scanner {
	return &scanner{c: c, rep: rep, scanned: map[string]bool{}, snapshot: map[string][]byte{},
		objects: map[string]bool{}, noEnv: map[string]at{}}
}

func (s *scanner) errAt(src *source, n *yaml.Node, p fieldPath, format string, args ...any) {
	e := &Error{File: src.rel, Field: p.String(), Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	s.rep.add(e)
}

func (s *scanner) errAtRef(a at, format string, args ...any) {
	if a.src == nil {
		s.rep.add(&Error{File: a.path.String(), Msg: fmt.Sprintf(format, args...)})
		return
	}
	s.errAt(a.src, a.node, a.path, format, args...)
}

// yamlLine reads the line out of a yaml.v3 syntax error.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// read reads a Compose file (rel, written as shown) named at ref, and parses it.
func (s *scanner) read(rel, shown string, ref at) *source {
	if len(s.snapshot) >= maxFiles {
		s.errAtRef(ref, "a stack reads at most %d files", maxFiles)
		return nil
	}
	data, err := s.c.readFile(rel, shown, maxFileSize)
	if err != nil {
		s.errAtRef(ref, "%v", err)
		return nil
	}
	s.rep.file(rel)
	s.snapshot[rel] = data
	src := &source{rel: rel}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			e := &Error{File: rel, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
			if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
				e.Line, _ = strconv.Atoi(m[1])
				e.Msg = m[2]
			}
			s.rep.add(e)
			return nil
		}
		if len(doc.Content) > 0 {
			src.docs = append(src.docs, doc.Content[0])
		}
	}
	s.sources = append(s.sources, src)
	return src
}

// scan checks one Compose file and reads the files it names.
func (s *scanner) scan(src *source, ctx scanCtx) {
	key := fmt.Sprintf("%s|%d|%s", src.rel, ctx.kind, ctx.base)
	if s.scanned[key] {
		return
	}
	s.scanned[key] = true
	for _, doc := range src.docs {
		root := deref(doc)
		if isNull(root) {
			continue
		}
		if root.Kind != yaml.MappingNode {
			s.errAt(src, root, nil, "the top level of a Compose file must be a mapping")
			continue
		}
		s.walk(src, root, nil, ctx.env, false, map[*yaml.Node]bool{})
		if n := child(root, "name"); ctx.kind == kindMain && !isNull(n) {
			if v, ok := s.str(src, n, fieldPath{"name"}, ctx.env); ok && v != ctx.env["COMPOSE_PROJECT_NAME"] {
				s.errAt(src, n, fieldPath{"name"}, "the stack's name is the step's (%s), and this file names it %s: leave name out", ctx.env["COMPOSE_PROJECT_NAME"], quote(v))
			}
		}
		if ctx.kind != kindExtends {
			s.includes(src, root, ctx)
			s.objectFiles(src, root, ctx)
		}
		s.services(src, root, ctx)
	}
}

// walk checks every key against the supported list and every string against
// interpolation. open holds the nodes being walked: an alias to one of them is
// a loop.
func (s *scanner) walk(src *source, n *yaml.Node, p fieldPath, env map[string]string, extension bool, open map[*yaml.Node]bool) {
	if s.visits++; s.visits > maxVisits || len(open) > maxDepth {
		if !s.tooDeep {
			s.tooDeep = true
			s.errAt(src, n, p, "the file nests deeper than %d levels or expands to more than %d YAML nodes (aliases included)", maxDepth, maxVisits)
		}
		return
	}
	n = deref(n)
	if n == nil || s.tooDeep {
		return
	}
	if open[n] {
		s.errAt(src, n, p, "an alias refers to a node that contains it")
		s.tooDeep = true
		return
	}
	open[n] = true
	defer delete(open, n)
	switch n.Kind {
	case yaml.MappingNode:
		checkKeys := !extension && takesMapping(p.pattern())
		for _, e := range entries(n) {
			k := e.key.Value
			kp := p.key(k)
			ext := extension || !checkKeys || strings.HasPrefix(k, "x-")
			if !ext {
				if ok, msg := keyStatus(kp.pattern(), k); !ok {
					s.errAt(src, e.key, kp, "%s", msg)
					continue
				}
			}
			s.walk(src, e.value, kp, env, ext, open)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			s.walk(src, item, p.index(i), env, extension, open)
		}
	case yaml.ScalarNode:
		if n.Tag == "!!str" {
			s.interpolate(src, n, p, env)
		}
	}
}

// interpolate is the value of a string scalar with its ${VAR}s replaced.
func (s *scanner) interpolate(src *source, n *yaml.Node, p fieldPath, env map[string]string) (string, bool) {
	v, err := strictSubstitute(n.Value, lookupIn(env))
	if err != nil {
		s.errAt(src, n, p, "%v", err)
		return "", false
	}
	return v, true
}

// str is a scalar's interpolated value; false for a missing node, a non-scalar
// (the schema check reports it) or a failed interpolation (reported by walk).
func (s *scanner) str(src *source, n *yaml.Node, p fieldPath, env map[string]string) (string, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", false
	}
	if n.Tag != "!!str" {
		return n.Value, true
	}
	return s.interpolate(src, n, p, env)
}

// scalars are a node that is one string or a list of them.
func scalars(n *yaml.Node, p fieldPath) ([]*yaml.Node, []fieldPath) {
	n = deref(n)
	switch {
	case n == nil:
	case n.Kind == yaml.ScalarNode && n.Tag != "!!null":
		return []*yaml.Node{n}, []fieldPath{p}
	case n.Kind == yaml.SequenceNode:
		var ps []fieldPath
		for i := range n.Content {
			ps = append(ps, p.index(i))
		}
		return n.Content, ps
	}
	return nil, nil
}

// workerPath resolves a worker-side path written in src.
func (s *scanner) workerPath(src *source, n *yaml.Node, p fieldPath, ctx scanCtx) (rel, shown string, ok bool) {
	v, ok := s.str(src, n, p, ctx.env)
	if !ok {
		return "", "", false
	}
	if strings.HasPrefix(v, "/") {
		s.errAt(src, n, p, "%s: write the path relative to the Compose file's directory; absolute worker paths are not accepted", quote(v))
		return "", "", false
	}
	rel, err := s.c.rel(ctx.base, v)
	if err != nil {
		s.errAt(src, n, p, "%v", err)
		return "", "", false
	}
	return rel, v, true
}

// includes reads the files of a top-level include.
func (s *scanner) includes(src *source, root *yaml.Node, ctx scanCtx) {
	inc := child(root, "include")
	if isNull(inc) {
		return
	}
	fp := fieldPath{"include"}
	if ctx.kind != kindMain {
		s.errAt(src, inc, fp, "an included file cannot include further files (clusterflow keeps includes one level deep)")
		return
	}
	if inc.Kind != yaml.SequenceNode {
		return // compose-go refuses it before reading anything
	}
	for i, item := range inc.Content {
		ip := fp.index(i)
		item = deref(item)
		var paths, envFiles []*yaml.Node
		var pathPs, envPs []fieldPath
		var dirNode *yaml.Node
		switch item.Kind {
		case yaml.ScalarNode:
			paths, pathPs = scalars(item, ip)
		case yaml.MappingNode:
			paths, pathPs = scalars(child(item, "path"), ip.key("path"))
			envFiles, envPs = scalars(child(item, "env_file"), ip.key("env_file"))
			dirNode = child(item, "project_directory")
		default:
			continue
		}
		var rels, shown []string
		for j, n := range paths {
			if rel, sh, ok := s.workerPath(src, n, pathPs[j], ctx); ok {
				rels, shown = append(rels, rel), append(shown, sh)
			}
		}
		if len(rels) != len(paths) || len(rels) == 0 {
			continue
		}
		dir := path.Dir(rels[0])
		if !isNull(dirNode) {
			d, _, ok := s.workerPath(src, dirNode, ip.key("project_directory"), ctx)
			if !ok {
				continue
			}
			dir = d
		}
		env := maps.Clone(ctx.env)
		if len(envFiles) == 0 {
			s.noEnv[dir] = at{src, item, ip}
		}
		for j, n := range envFiles {
			if v, ok := s.str(src, n, envPs[j], ctx.env); ok && v == "/dev/null" {
				continue // compose's way to say "no env file"
			}
			rel, sh, ok := s.workerPath(src, n, envPs[j], ctx)
			if !ok {
				continue
			}
			vars, ok := s.envFile(rel, sh, at{src, n, envPs[j]}, ctx.env, true)
			if !ok {
				continue
			}
			for k, v := range vars { // the caller's variables win, as in compose-go
				if _, set := env[k]; !set {
					env[k] = v
				}
			}
		}
		for j, rel := range rels {
			if inc := s.read(rel, shown[j], at{src, paths[j], pathPs[j]}); inc != nil {
				s.scan(inc, scanCtx{kind: kindIncluded, base: dir, env: env})
			}
		}
	}
}

// envLine is the line number a dotenv parse error starts with (the rest of the
// message may quote the file, which is never shown).
var envLine = regexp.MustCompile(`line (\d+)`)

// envFile reads an env (or label) file into the snapshot and parses it. Its
// content never appears in a message. A missing file that is not required is
// skipped, as compose-go does.
func (s *scanner) envFile(rel, shown string, ref at, env map[string]string, required bool) (map[string]string, bool) {
	if _, err := s.c.root.Stat(rel); !required && errors.Is(err, fs.ErrNotExist) {
		return nil, true
	}
	if _, done := s.snapshot[rel]; !done && len(s.snapshot) >= maxFiles {
		s.errAtRef(ref, "a stack reads at most %d files", maxFiles)
		return nil, false
	}
	data, err := s.c.readFile(rel, shown, maxFileSize)
	if err != nil {
		s.errAtRef(ref, "%v", err)
		return nil, false
	}
	vars := map[string]string{}
	lookup := func(k string) (string, bool) {
		if v, ok := env[k]; ok {
			return v, true
		}
		v, ok := vars[k]
		return v, ok
	}
	if err := dotenv.ParseWithFormat(bytes.NewReader(data), rel, vars, lookup, ""); err != nil {
		where := ""
		if m := envLine.FindStringSubmatch(err.Error()); m != nil {
			where = " at line " + m[1]
		}
		s.errAtRef(ref, "%s is not a valid env file (KEY=VALUE lines)%s", quote(shown), where)
		return nil, false
	}
	s.snapshot[rel] = data
	return vars, true
}

// objectFiles checks the file of every secret and config: inside the root and a
// regular file. Their content is not read here.
func (s *scanner) objectFiles(src *source, root *yaml.Node, ctx scanCtx) {
	for _, kind := range []string{"secrets", "configs"} {
		for _, e := range entries(child(root, kind)) {
			p := fieldPath{kind, e.key.Value}
			obj := deref(e.value)
			if f := child(obj, "file"); !isNull(f) {
				if rel, shown, ok := s.workerPath(src, f, p.key("file"), ctx); ok {
					if err := s.c.statFile(rel, shown); err != nil {
						s.errAt(src, f, p.key("file"), "%v", err)
					} else {
						s.objects[rel] = true
					}
				}
			}
			if v := child(obj, "environment"); !isNull(v) {
				if name, ok := s.str(src, v, p.key("environment"), ctx.env); ok && !envName.MatchString(name) {
					s.errAt(src, v, p.key("environment"), "must be the name of an environment variable of the worker, got %s", quote(name))
				}
			}
		}
	}
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// services reads the files the services of src name and checks the short port
// and volume syntax.
func (s *scanner) services(src *source, root *yaml.Node, ctx scanCtx) {
	for _, e := range entries(child(root, "services")) {
		sp := fieldPath{"services", e.key.Value}
		svc := deref(e.value)
		if svc == nil || svc.Kind != yaml.MappingNode {
			continue
		}
		if f := child(child(svc, "extends"), "file"); !isNull(f) {
			if rel, shown, ok := s.workerPath(src, f, sp.key("extends").key("file"), ctx); ok {
				if base := s.read(rel, shown, at{src, f, sp.key("extends").key("file")}); base != nil {
					s.scan(base, scanCtx{kind: kindExtends, base: path.Dir(rel), env: ctx.env})
				}
			}
		}
		s.serviceEnvFiles(src, svc, sp, ctx)
		labels, lps := scalars(child(svc, "label_file"), sp.key("label_file"))
		for i, n := range labels {
			if rel, shown, ok := s.workerPath(src, n, lps[i], ctx); ok {
				s.envFile(rel, shown, at{src, n, lps[i]}, ctx.env, true)
			}
		}
		s.volumes(src, svc, sp, ctx)
		ports, pps := scalars(child(svc, "ports"), sp.key("ports"))
		for i, n := range ports {
			if deref(n).Kind != yaml.ScalarNode {
				continue
			}
			if v, ok := s.str(src, n, pps[i], ctx.env); ok {
				if _, err := types.ParsePortConfig(v); err != nil {
					s.errAt(src, n, pps[i], "not a port ([HOST:]CONTAINER[/PROTOCOL], such as \"8080:80\"): %v", err)
				}
			}
		}
	}
}

func (s *scanner) serviceEnvFiles(src *source, svc *yaml.Node, sp fieldPath, ctx scanCtx) {
	n := child(svc, "env_file")
	p := sp.key("env_file")
	var items []*yaml.Node
	var ps []fieldPath
	switch {
	case isNull(n):
		return
	case n.Kind == yaml.ScalarNode:
		items, ps = []*yaml.Node{n}, []fieldPath{p}
	case n.Kind == yaml.SequenceNode:
		items, ps = scalars(n, p)
	}
	for i, item := range items {
		item, ip, required := deref(item), ps[i], true
		if item.Kind == yaml.MappingNode {
			if r := child(item, "required"); !isNull(r) && r.Kind == yaml.ScalarNode {
				required = r.Value != "false"
			}
			if f := child(item, "format"); !isNull(f) && f.Value != "" && f.Value != dotenv.DotEnv {
				s.errAt(src, f, ip.key("format"), "only the dotenv format is read: leave format out")
			}
			ip = ip.key("path")
			item = child(item, "path")
			if isNull(item) || item.Kind != yaml.ScalarNode {
				// compose-go v2.16.2 panics on an entry without a path
				s.errAt(src, deref(items[i]), ip, "each env_file entry needs a path (a string)")
				continue
			}
		}
		if rel, shown, ok := s.workerPath(src, item, ip, ctx); ok {
			s.envFile(rel, shown, at{src, item, ip}, ctx.env, required)
		}
	}
}

// volumes refuses a bind mount whose source is not an absolute path: the source
// is a path on the node, and compose-go would make a relative one a path of the
// worker's directory.
func (s *scanner) volumes(src *source, svc *yaml.Node, sp fieldPath, ctx scanCtx) {
	vols := deref(child(svc, "volumes"))
	if vols == nil || vols.Kind != yaml.SequenceNode {
		return
	}
	const why = "a bind mount's source is a path on the node: write it absolute (a relative path would name a directory of the worker)"
	for i, item := range vols.Content {
		ip := sp.key("volumes").index(i)
		item = deref(item)
		switch item.Kind {
		case yaml.ScalarNode:
			if v, ok := s.str(src, item, ip, ctx.env); ok && (strings.HasPrefix(v, ".") || strings.HasPrefix(v, "~")) {
				s.errAt(src, item, ip, "%s: %s", quote(v), why)
			}
		case yaml.MappingNode:
			t, _ := s.str(src, child(item, "type"), ip.key("type"), ctx.env)
			if v, ok := s.str(src, child(item, "source"), ip.key("source"), ctx.env); ok && t == types.VolumeTypeBind && !strings.HasPrefix(v, "/") {
				s.errAt(src, child(item, "source"), ip.key("source"), "%s: %s", quote(v), why)
			}
		}
	}
}

// unsetError is a ${VAR} with no value and no default.
type unsetError struct{ name string }

func (e *unsetError) Error() string {
	return fmt.Sprintf("variable %s is not set: interpolation reads only the playbook's vars (write ${%s:-default} to give a default)", e.name, e.name)
}

// strictSubstitute is compose-go's template substitution, except that a
// variable that is not set and has no default is an error, not a blank.
func strictSubstitute(tmpl string, mapping template.Mapping) (string, error) {
	replace := func(sub string, m template.Mapping, cfg *template.Config) (string, error) {
		unset := ""
		record := func(k string) (string, bool) {
			v, ok := m(k)
			if !ok {
				unset = k
			}
			return v, ok
		}
		v, applied, err := template.DefaultReplacementAppliedFunc(sub, record, cfg)
		if err != nil {
			return "", err
		}
		if !applied && unset != "" {
			return "", &unsetError{unset}
		}
		return v, nil
	}
	return template.SubstituteWithOptions(tmpl, mapping, template.WithoutLogging, template.WithReplacementFunction(replace))
}

func lookupIn(env map[string]string) template.Mapping {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}
