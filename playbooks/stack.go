package playbooks

import (
	"context"
	"errors"
	"maps"
	"path"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/clusterflow/clusterflow/internal/compose"
)

// StackStep deploys a swarm stack from Compose files (kind deployStack, the
// DeployStack workflow), as `docker stack deploy -c FILE... STACK` would, through
// a manager, and follows every service to an outcome. The files are read on the
// worker when the step runs (and by the parser, which checks them): only names
// and references travel, never the content of a secret or config.
type StackStep struct {
	Stack string `json:"stack"`
	// Compose are the Compose files, relative to Dir, merged in order as `docker
	// stack deploy -c a -c b` merges them.
	Compose []string `json:"compose"`
	// Dir is the playbook's directory on the worker (absolute): every file the
	// stack names (Compose files, secret and config files, env files) must be
	// inside it.
	Dir string `json:"dir"`
	// Manager: as RotateCAStep.Manager; default: the first of the step's hosts
	// whose engine is a reachable manager.
	Manager string `json:"manager,omitempty"`
	// Prune removes the stack's services (and secrets and configs) that the files
	// no longer have.
	Prune bool `json:"prune,omitempty"`
	// RollbackOnFailure: when a service fails, every service the step changed
	// goes back to the spec it had before the step (a service it created is
	// removed).
	RollbackOnFailure bool          `json:"rollbackOnFailure,omitempty"`
	RegistryAuth      *RegistryAuth `json:"registryAuth,omitempty"`
	// Vars are the only variables ${VAR} in the files may name: the playbook's
	// spec.vars.
	Vars map[string]string `json:"vars,omitempty"`
}

// stackFields are the fields of deployStack.
var stackFields = []string{"stack", "compose", "manager", "prune", "rollbackOnFailure", "registryAuth"}

// readStack reads a deployStack step, then loads its Compose files as the step
// will, so that a bad file is reported now, at its own file, line and field.
func readStack(f *file, m *fields, s *Step, c *stepContext) {
	v := &StackStep{Dir: f.dir, Vars: maps.Clone(c.vars)}
	s.Stack = v
	ok := true
	if n, p := m.get("stack"); n != nil {
		v.Stack, _ = f.nonEmptyStr(n, p)
	}
	n, p := m.get("compose")
	switch {
	case n == nil:
		ok = false
	case n.Kind == yaml.SequenceNode:
		items, _ := f.list(n, p, "Compose file paths")
		for i, item := range items {
			rel, good := f.dirRel(item, indexPath(p, i))
			ok = ok && good
			v.Compose = append(v.Compose, rel)
		}
	default:
		rel, good := f.dirRel(n, p)
		ok = good
		v.Compose = []string{rel}
	}
	v.Manager = f.managerRef(m)
	if b, bp := m.get("prune"); b != nil {
		v.Prune, _ = f.boolean(b, bp)
	}
	if b, bp := m.get("rollbackOnFailure"); b != nil {
		v.RollbackOnFailure, _ = f.boolean(b, bp)
	}
	v.RegistryAuth = f.readRegistryAuth(m)
	if !ok || !c.varsOK || compose.CheckStackName(v.Stack) != nil || len(v.Compose) == 0 {
		return // Normalize reports what is wrong with the fields themselves
	}
	f.checkStack(n, p, v)
}

// checkStack loads the stack's Compose files with internal/compose and reports
// each problem at its Compose file's line, under the playbook's directory as the
// playbook is named.
func (f *file) checkStack(n *yaml.Node, p string, v *StackStep) {
	_, err := compose.Load(context.Background(), compose.LoadOptions{Root: v.Dir, Files: v.Compose, Stack: v.Stack, Vars: v.Vars})
	var list compose.ErrorList
	switch {
	case err == nil:
	case errors.As(err, &list):
		for _, e := range list {
			f.r.add(&Error{File: filepath.Join(f.showDir, filepath.FromSlash(e.File)), Line: e.Line, Column: e.Column,
				Field: e.Field, Msg: e.Msg})
		}
		what := "problems"
		if len(list) == 1 {
			what = "problem"
		}
		f.errorAt(n, p, "the stack's Compose files have %d %s (listed at their files)", len(list), what)
	default:
		f.errorAt(n, p, "%v", err)
	}
}

// Normalize checks a deployStack step's settings.
func (v *StackStep) Normalize(sc Scope) Problems {
	var ps Problems
	if v.Stack == "" {
		ps.add("stack", "is required; the stack's name, the prefix of its services (STACK_web)")
	} else if why := stackNameProblem(v.Stack); why != "" {
		ps.add("stack", "%s", why)
	}
	switch {
	case len(v.Compose) == 0:
		ps.add("compose", "is required; a Compose file relative to the playbook, or a list of them merged in order")
	case len(v.Compose) > maxComposeFiles:
		ps.add("compose", "lists %d files; the limit is %d", len(v.Compose), maxComposeFiles)
	}
	for i, c := range v.Compose {
		field := "compose"
		if len(v.Compose) > 1 {
			field = indexPath("compose", i)
		}
		ps.dirPath(field, c)
		if ext := path.Ext(c); ext != ".yaml" && ext != ".yml" && c != "" {
			ps.add(field, "a Compose file's name ends in .yaml or .yml, got %s", quote(c))
		}
	}
	ps.workerDir(v.Dir)
	sc.inventoryRef(&ps, "manager", v.Manager)
	if v.RegistryAuth != nil {
		ps.under("registryAuth", v.RegistryAuth.Normalize())
	}
	ps.envNames("vars", v.Vars)
	return ps
}

// maxComposeFiles bounds a stack's Compose files (internal/compose's limit).
const maxComposeFiles = 16

// workerDir checks the dir of a step that reads files of the playbook's
// directory: the parser sets it; JSON input must give it absolute.
func (ps *Problems) workerDir(dir string) {
	switch {
	case dir == "":
		ps.add("dir", "is required: the playbook's directory on the worker (absolute), which the step's files are relative to")
	case !filepath.IsAbs(dir):
		ps.add("dir", "must be an absolute path on the worker, got %s", quote(dir))
	}
}

// stackNameProblem says what is wrong with a stack's name, or "".
func stackNameProblem(name string) string {
	if err := compose.CheckStackName(name); err != nil {
		return err.Error()
	}
	return ""
}
