package playbooks

import (
	"path/filepath"
	"regexp"

	"gopkg.in/yaml.v3"

	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// Load reads a playbook file and the kind: Inventory files it includes, validates it
// and resolves it into a Plan. Errors name the file as path is written here.
// The error, when not nil, is always an ErrorList.
func Load(path string) (*Plan, error) { return LoadWith(path, Options{}) }

// Options are how a playbook is read.
type Options struct {
	// Files is the worker's file policy: every path of the worker's machine the
	// playbook names (the file itself, included inventories, keys, known_hosts,
	// binaries, sums, packages, tarballs, upload sources, the playbook's directory)
	// is refused outside it before it is opened. nil checks nothing: for the
	// operator's own tools and tests; the worker always sets it.
	Files *workerfs.Policy
}

// LoadWith is Load with options.
func LoadWith(path string, opts Options) (*Plan, error) {
	if opts.Files != nil {
		abs, err := filepath.Abs(path)
		if err == nil {
			err = opts.Files.Read(abs)
		}
		if err != nil {
			return nil, ErrorList{{File: path, Msg: err.Error()}}
		}
	}
	data, err := readLimited(path, maxFileSize)
	if err != nil {
		return nil, ErrorList{{File: path, Msg: err.Error()}}
	}
	return ParseWith(path, data, filepath.Dir(path), opts)
}

// Parse reads a playbook from data, as Load does from a file. source names the text in
// messages ("inline", or a path); baseDir is the directory that relative paths in it
// are resolved in (includes, upload src, identityFile, knownHostsFile); "" means the
// current directory. The error, when not nil, is always an ErrorList.
func Parse(source string, data []byte, baseDir string) (*Plan, error) {
	return ParseWith(source, data, baseDir, Options{})
}

// ParseWith is Parse with options.
func ParseWith(source string, data []byte, baseDir string, opts Options) (*Plan, error) {
	r := newReport()
	r.policy = opts.Files
	r.file(source)
	if baseDir == "" {
		baseDir = "."
	}
	abs, err := filepath.Abs(baseDir)
	if err != nil {
		r.add(&Error{File: source, Msg: "cannot resolve the directory " + quote(baseDir) + ": " + err.Error()})
		return nil, r.sorted()
	}
	f := &file{name: source, dir: abs, showDir: baseDir, r: r}
	plan := f.playbook(data)
	if len(r.errs) > 0 {
		return nil, r.sorted()
	}
	return plan, nil
}

// Kinds of file.
const (
	kindPlaybook  = "Playbook"
	kindInventory = "Inventory"
)

// namePattern is the charset of metadata.name, metadata.cluster, host and group names:
// they end up in workflow IDs, file names and messages.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

const nameRule = "lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters"

// playbook reads the top level of a playbook file. It returns nil, or a plan that is
// valid only if no error was reported.
func (f *file) playbook(data []byte) *Plan {
	root := f.parseDocument(data)
	if root == nil {
		return nil
	}
	top := f.mapping(root, "")
	if top == nil || !f.header(top, kindPlaybook) {
		return nil
	}
	f.checkKeys(top, "apiVersion", "kind", "metadata", "spec")
	plan := &Plan{Source: f.name}

	if n, p := top.get("metadata"); n == nil {
		f.missing(top, "metadata", "give at least metadata.name")
	} else {
		plan.Name, plan.Cluster = f.metadata(n, p, true)
	}

	n, p := top.get("spec")
	if n == nil {
		f.missing(top, "spec", "a playbook needs spec.inventory and spec.steps")
		return plan
	}
	spec := f.mapping(n, p)
	if spec == nil {
		return plan
	}
	f.checkKeys(spec, "hostKeyPolicy", "vars", "inventory", "steps")

	policy := HostKeyStrict
	if n, p := spec.get("hostKeyPolicy"); n != nil {
		policy = f.hostKeyPolicy(n, p)
	}
	varsOK := true
	if n, p := spec.get("vars"); n != nil {
		plan.Vars, varsOK = f.stringMap(n, p)
	}

	inv := newInventory(policy)
	if n, p := spec.get("inventory"); n == nil {
		f.missing(spec, "inventory", "list hosts under spec.inventory.hosts or include an inventory file")
		inv.incomplete = true
	} else {
		inv.playbookInventory(f, n, p)
	}
	plan.Hosts = inv.finish()

	stepsNode, p := spec.get("steps")
	if stepsNode == nil {
		f.missing(spec, "steps", "a playbook needs at least one step")
	} else {
		plan.Steps = f.steps(stepsNode, p, &stepContext{inv: inv, vars: plan.Vars, varsOK: varsOK})
	}
	if len(f.r.errs) == 0 {
		f.checkLimits(plan, spec, stepsNode) // only a plan that is valid otherwise
	}
	return plan
}

// header checks apiVersion and kind. A file of another version or kind is not read
// further: its other fields would only produce confusing errors.
//
// Included files may be any file the worker can read, named by a playbook sent inline
// from the Web UI; until an included file shows it is an inventory, messages about it
// do not quote what it holds.
func (f *file) header(top *fields, want string) bool {
	got := func(v string) string {
		if want == kindInventory {
			return ""
		}
		return ", got " + quote(v)
	}
	ok := true
	if n, p := top.get("apiVersion"); n == nil {
		f.missing(top, "apiVersion", "write apiVersion: %s", APIVersion)
		ok = false
	} else if v, good := f.str(n, p); !good {
		ok = false
	} else if v != APIVersion {
		f.errorAt(n, p, "must be %s%s", quote(APIVersion), got(v))
		ok = false
	}

	n, p := top.get("kind")
	if n == nil {
		f.missing(top, "kind", "write kind: %s", want)
		return false
	}
	v, good := f.str(n, p)
	switch {
	case !good:
		return false
	case v == want:
		return ok
	case want == kindPlaybook && v == kindInventory:
		f.errorAt(n, p, "this file is an Inventory, not a Playbook; run a playbook that includes it under spec.inventory.include")
	case want == kindInventory && v == kindPlaybook:
		f.errorAt(n, p, "included files must be kind Inventory, got %s; a playbook cannot include another playbook", quote(v))
	default:
		f.errorAt(n, p, "must be %s%s", quote(want), got(v))
	}
	return false
}

// metadata reads name, cluster and description. name is required in playbooks and
// optional in inventory files.
func (f *file) metadata(n *yaml.Node, path string, nameRequired bool) (name, cluster string) {
	m := f.mapping(n, path)
	if m == nil {
		return "", ""
	}
	f.checkKeys(m, "name", "cluster", "description")
	if n, p := m.get("name"); n != nil {
		name = f.name63(n, p)
	} else if nameRequired {
		f.missing(m, "name", "it names the workflow (%s)", nameRule)
	}
	if n, p := m.get("cluster"); n != nil {
		cluster = f.name63(n, p)
	}
	if n, p := m.get("description"); n != nil {
		f.str(n, p)
	}
	return name, cluster
}

// name63 reads a name in namePattern. It returns the string even when it is invalid,
// so that later references to it do not report it missing a second time.
func (f *file) name63(n *yaml.Node, path string) string {
	s, ok := f.str(n, path)
	if ok && !namePattern.MatchString(s) {
		f.errorAt(n, path, "must be %s; got %s", nameRule, quote(s))
	}
	return s
}

// hostKeyPolicy reads spec.hostKeyPolicy. There is deliberately no value that turns
// host key checking off.
func (f *file) hostKeyPolicy(n *yaml.Node, path string) string {
	s, ok := f.str(n, path)
	if !ok {
		return HostKeyStrict
	}
	switch s {
	case HostKeyStrict, HostKeyTOFU:
		return s
	case "insecure", "ignore", "none", "off", "no", "false", "skip", "disabled", "accept-any", "any":
		f.errorAt(n, path, "clusterflow always checks host keys; hostKeyPolicy must be strict (the default: keys must already be in known_hosts) or tofu (the first key seen is pinned in known_hosts), got %s", quote(s))
	default:
		f.errorAt(n, path, "must be strict (the default) or tofu, got %s", quote(s))
	}
	return HostKeyStrict
}
