package playbooks

import (
	"gopkg.in/yaml.v3"
)

// readRun reads the fields of a run step.
func readRun(f *file, m *fields, s *Step, _ *stepContext) {
	r := &RunStep{ExitCodes: []int{0}}
	s.Run = r
	if n, p := m.get("command"); n != nil {
		r.Command, _ = f.argv(n, p)
	}
	if n, p := m.get("creates"); n != nil {
		r.Creates, _ = f.nonEmptyStr(n, p)
	}
	if n, p := m.get("unless"); n != nil {
		r.Unless, _ = f.argv(n, p)
	}
	if n, p := m.get("env"); n != nil {
		r.Env, _ = f.stringMap(n, p)
	}
	if n, p := m.get("dir"); n != nil {
		r.Dir, _ = f.nonEmptyStr(n, p)
	}
	if n, p := m.get("exitCodes"); n != nil {
		r.ExitCodes, _ = f.exitCodes(n, p)
	}
}

// Normalize checks a run step's settings.
func (r *RunStep) Normalize(Scope) Problems {
	var ps Problems
	if len(r.Command) == 0 {
		ps.add("command", "is required; give the command as an argv list, e.g. [uname, -a]")
	}
	ps.remotePath("creates", r.Creates)
	ps.remotePath("dir", r.Dir)
	ps.envNames("env", r.Env)
	for i, c := range r.ExitCodes {
		ps.intRange(indexPath("exitCodes", i), c, 0, 255)
	}
	return ps
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

// exitCodes reads a non-empty list of exit statuses.
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
		c, good := f.anyInteger(item, indexPath(path, i))
		codes = append(codes, c)
		ok = ok && good
	}
	return codes, ok
}
