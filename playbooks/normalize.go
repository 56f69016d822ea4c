package playbooks

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/clusterflow/clusterflow/internal/rules"
)

// The rules of a step live in one place: the Normalize method of its type, which
// applies the defaults a zero value stands for and checks every value. The parser
// calls it once the step's fields are read, and reports each problem at the line of
// the field it names; the workflows call it for input that arrives without the parser
// (a plan or a procedure's input sent as JSON from the Web UI). The YAML readers only
// decode: types, the forms only YAML has ("8080:80", "25%", octal modes), defaults of
// fields left out, references to inventory groups, and the files on this machine.
//
// Normalize methods run inside workflow code: they must stay deterministic (no map
// ranging, time or I/O).

// Problem is one thing wrong with the settings of a step. Field is the field's path
// within the step, in the names a playbook writes ("version", "networks[1].name"); ""
// stands for the step as a whole. Key says the problem is with the key of the path's
// last element (a host named under labels), not with its value.
type Problem struct {
	Field string
	Msg   string
	Key   bool
}

// Problems is what a Normalize method found, field by field.
type Problems []Problem

// Error joins the problems: "FIELD: MSG; FIELD: MSG".
func (ps Problems) Error() string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Msg
		if p.Field != "" {
			parts[i] = p.Field + ": " + p.Msg
		}
	}
	return strings.Join(parts, "; ")
}

// Err is nil when there are no problems, and else the problems with where (such as
// "plan.steps[2] (docker)") in front.
func (ps Problems) Err(where string) error {
	if len(ps) == 0 {
		return nil
	}
	if where == "" {
		return ps
	}
	return fmt.Errorf("%s: %w", where, ps)
}

func (ps *Problems) add(field, format string, args ...any) {
	*ps = append(*ps, Problem{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// under adds the problems of a part of the settings (a network, an update policy),
// their fields under prefix.
func (ps *Problems) under(prefix string, sub Problems) {
	for _, p := range sub {
		p.Field = strings.TrimSuffix(prefix+"."+p.Field, ".")
		*ps = append(*ps, p)
	}
}

// intRange and durationRange check that a value lies in [lo, hi].
func (ps *Problems) intRange(field string, v, lo, hi int) {
	if v < lo || v > hi {
		ps.add(field, "must be between %d and %d, got %d", lo, hi, v)
	}
}

func (ps *Problems) durationRange(field string, d Duration, lo, hi time.Duration) {
	if d.Std() < lo || d.Std() > hi {
		ps.add(field, "must be between %s and %s, got %s", shortDuration(lo), shortDuration(hi), shortDuration(d.Std()))
	}
}

// Scope is what a step's references are checked against.
type Scope struct {
	// Hosts are the step's own hosts, by name: where managers and servers are chosen.
	Hosts []string
	// Inventory is every host of the plan (or of the input's cluster), by name; nil
	// when not all of them are known (the parser could not read them all), and
	// references to hosts outside Hosts are then not checked.
	Inventory []string
}

// inventoryRef checks a reference to an inventory host, such as a step's manager.
func (sc Scope) inventoryRef(ps *Problems, field, name string) {
	if name == "" || sc.Inventory == nil || slices.Contains(sc.Inventory, name) {
		return
	}
	ps.add(field, "host %s is not in the inventory (hosts: %s)", quote(name), listNames(sc.Inventory))
}

// stepRef checks that names (managers, servers) are among the step's hosts. With no
// hosts known there is nothing to check against: the step's hosts are reported.
func (sc Scope) stepRef(ps *Problems, field string, names []string) {
	if len(sc.Hosts) == 0 {
		return
	}
	for _, name := range names {
		if !slices.Contains(sc.Hosts, name) {
			ps.add(field, "%s must be among the step's hosts; %s is not (the step's hosts: %s)", field, quote(name), strings.Join(sc.Hosts, ", "))
			return
		}
	}
}

// listNames lists names for a message, the first ten of them.
func listNames(names []string) string {
	const max = 10
	if len(names) > max {
		return strings.Join(names[:max], ", ") + fmt.Sprintf(", ... (%d in all)", len(names))
	}
	return strings.Join(names, ", ")
}

// Normalize checks the step's common fields and its kind's settings, and applies the
// defaults of its kind. inventory names every host of the plan (nil: not known).
func (s *Step) Normalize(inventory []string) Problems {
	var ps Problems
	kind, known := stepKinds[s.Kind]
	switch {
	case s.Kind == "":
		ps.add("kind", "is required; kinds are: %s", kindNames())
	case !known:
		ps.add("kind", "unknown step kind %s; kinds are: %s", quote(s.Kind), kindNames())
	}
	if s.Name == "" {
		ps.add("name", "is required; each step needs a unique name")
	} else if why := stepNameProblem(s.Name); why != "" {
		ps.add("name", "%s", why)
	}
	if len(s.Hosts) == 0 {
		ps.add("hosts", `is required; write "all", a host or group name, or a list of them`)
	}
	sc := Scope{Hosts: s.Hosts, Inventory: inventory}
	for _, h := range s.Hosts {
		sc.inventoryRef(&ps, "hosts", h)
	}
	ps.intRange("parallel", s.Parallel, 1, maxParallel)
	ps.intRange("maxFailPercent", s.MaxFailPercent, 0, 100)
	ps.durationRange("timeout", s.Timeout, minStepTimeout, maxStepTimeout)
	ps.intRange("attempts", s.Attempts, 1, maxAttempts)
	if known {
		ps = append(ps, kind.normalize(s, sc)...)
	}
	return ps
}

// Normalize checks a plan that did not come from the parser (a JSON input): its name,
// and every step with Step.Normalize. The error names the step.
func (p *Plan) Normalize() error {
	switch {
	case p.Name == "":
		return fmt.Errorf("plan.name is empty")
	case !namePattern.MatchString(p.Name):
		return fmt.Errorf("plan.name: must be %s; got %s", nameRule, quote(p.Name))
	case p.Cluster != "" && !namePattern.MatchString(p.Cluster):
		return fmt.Errorf("plan.cluster: must be %s; got %s", nameRule, quote(p.Cluster))
	case len(p.Source) > 4096 || strings.ContainsFunc(p.Source, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return fmt.Errorf("plan.source: must be a file name of at most 4096 bytes without control characters")
	case len(p.Steps) == 0:
		return fmt.Errorf("playbook %s has no steps", p.Name)
	}
	//workflowcheck:ignore sorted right away: the first bad name is always the same one
	vars := slices.Sorted(maps.Keys(p.Vars))
	for _, k := range vars {
		if !rules.EnvName(k) {
			return fmt.Errorf("plan.vars: name %s must be letters, digits and _, not starting with a digit", quote(k))
		}
	}
	if err := p.normalizeHosts(); err != nil {
		return err
	}
	names := make([]string, len(p.Hosts))
	for i, h := range p.Hosts {
		names[i] = h.Name
	}
	for i := range p.Steps {
		s := &p.Steps[i]
		if err := s.Normalize(names).Err(fmt.Sprintf("plan.steps[%d] (%s)", i, s.Name)); err != nil {
			return err
		}
	}
	return p.checkLimits()
}

// settingsOf is a kind's normalize function for the settings get returns: their
// Normalize, or a problem when a JSON step of the kind lacks them.
func settingsOf[T any, P interface {
	*T
	Normalize(Scope) Problems
}](field string, get func(*Step) P) func(*Step, Scope) Problems {
	return func(s *Step, sc Scope) Problems {
		settings := get(s)
		if settings == nil {
			return Problems{{Msg: fmt.Sprintf("kind %s needs %s", s.Kind, field)}}
		}
		return settings.Normalize(sc)
	}
}

// normalizeStep calls Normalize on a step the parser has read and reports its
// problems at the fields they name. A field the reader reported already is left
// alone: one mistake, one message.
func (f *file) normalizeStep(m *fields, s *Step, c *stepContext) {
	var inventory []string
	if !c.inv.incomplete {
		for _, e := range c.inv.hosts {
			inventory = append(inventory, e.host.Name)
		}
	}
	for _, p := range s.Normalize(inventory) {
		path := fieldPath(m.path, p.Field)
		if slices.Contains(c.settled, p.Field) || f.r.reportedAt(f.name, path) {
			continue
		}
		f.errorAt(m.locate(p.Field, p.Key), path, "%s", p.Msg)
	}
}

// reportedAt reports whether an error names field path, or a field inside it.
func (r *report) reportedAt(file, path string) bool {
	return slices.ContainsFunc(r.errs, func(e *Error) bool {
		if e.File != file {
			return false
		}
		rest, ok := strings.CutPrefix(e.Field, path)
		return ok && (rest == "" || rest[0] == '.' || rest[0] == '[')
	})
}

// locate finds the node a field path inside m names ("networks[1].name"): its value,
// or its key with key set. A field that is not in the file is reported where it is
// missing: at the deepest mapping or list on its path, as a missing field is.
func (m *fields) locate(field string, key bool) *yaml.Node {
	n := m.node
	for field != "" {
		var name string
		idx := -1
		switch {
		case field[0] == '[':
			end := strings.IndexByte(field, ']')
			if end < 0 {
				return n
			}
			idx, _ = strconv.Atoi(field[1:end])
			field = strings.TrimPrefix(field[end+1:], ".")
		default:
			end := strings.IndexAny(field, ".[")
			if end < 0 {
				end = len(field)
			}
			name, field = field[:end], strings.TrimPrefix(field[end:], ".")
		}
		next, keyNode := childNode(n, name, idx)
		if next == nil {
			return n
		}
		if key && field == "" && keyNode != nil {
			return keyNode
		}
		n = next
	}
	return n
}

// childNode is the value under name in a mapping, with its key, or item idx of a list.
func childNode(n *yaml.Node, name string, idx int) (value, key *yaml.Node) {
	switch {
	case idx >= 0 && n.Kind == yaml.SequenceNode && idx < len(n.Content):
		return n.Content[idx], nil
	case idx < 0 && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				return n.Content[i+1], n.Content[i]
			}
		}
	}
	return nil, nil
}
