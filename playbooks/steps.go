package playbooks

import (
	"fmt"
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
	maxParallel           = 1000
	minStepTimeout        = time.Second
	maxStepTimeout        = 24 * time.Hour
	maxAttempts           = 100
	maxStepName           = 100 // characters
	maxSteps              = 200 // per playbook
)

// commonStepFields are the fields every step has, whatever its kind.
var commonStepFields = []string{"name", "kind", "hosts", "parallel", "maxFailPercent", "timeout", "attempts"}

// stepKind describes a step kind: its own fields, which sit flat on the step next to
// the common ones, how to read them into the Step, and its settings' Normalize.
type stepKind struct {
	fields    []string
	read      func(f *file, m *fields, s *Step, c *stepContext)
	normalize func(s *Step, sc Scope) Problems
}

// stepContext is what kinds may need beyond the step itself. By the time steps are
// read, the inventory is resolved and the step's Hosts are set.
type stepContext struct {
	inv    *inventory
	vars   map[string]string
	varsOK bool // spec.vars is valid (or absent)
	// settled are the fields of the step being read that the reader has dealt with:
	// Normalize's problems with them would only repeat an error reported elsewhere.
	settled []string
}

// settle marks a field of the step being read as dealt with (see settled).
func (c *stepContext) settle(field string) { c.settled = append(c.settled, field) }

// stepKinds is the closed list of step kinds. To add one: a Kind constant, a pointer
// field on Step and the settings type in plan.go; its reader and its Normalize method
// in a file of its own; an entry here and in fieldUses (fielduse.go); its fields in
// doc.go and README.md (workflows/doc.go has the whole recipe, workflow included).
var stepKinds = map[string]stepKind{
	KindRun: {fields: []string{"command", "creates", "unless", "env", "dir", "exitCodes"}, read: readRun,
		normalize: settingsOf("run", func(s *Step) *RunStep { return s.Run })},
	KindUpload: {fields: []string{"src", "template", "dest", "mode", "owner", "group"}, read: readUpload,
		normalize: settingsOf("upload", func(s *Step) *UploadStep { return s.Upload })},
	KindDistributeKeys: {fields: []string{"clusterKey", "user", "mesh", "rotate"}, read: readDistributeKeys,
		normalize: settingsOf("distributeKeys", func(s *Step) *DistributeKeysStep { return s.DistributeKeys })},
	KindInstallDocker: {fields: []string{"source", "version", "mirror", "packages", "daemonConfig", "users"},
		read: readInstallDocker, normalize: settingsOf("installDocker", func(s *Step) *InstallDockerStep { return s.InstallDocker })},
	KindSwarmInit: {fields: []string{"managers", "advertiseAddr", "listenAddr", "dataPathAddr", "labels", "networks"},
		read: readSwarmInit, normalize: settingsOf("swarmInit", func(s *Step) *SwarmInitStep { return s.SwarmInit })},
	KindPromote:    {fields: []string{"manager"}, read: readNode, normalize: normalizeNode},
	KindDemote:     {fields: []string{"manager"}, read: readNode, normalize: normalizeNode},
	KindDrain:      {fields: []string{"manager"}, read: readNode, normalize: normalizeNode},
	KindActivate:   {fields: []string{"manager"}, read: readNode, normalize: normalizeNode},
	KindRemoveNode: {fields: []string{"manager", "force"}, read: readNode, normalize: normalizeNode},
	KindConsulBootstrap: {fields: []string{"servers", "source", "binary", "sha256", "sha256sums", "url", "version",
		"datacenter", "gossipKeyFile", "bindInterface"}, read: readConsul,
		normalize: settingsOf("consul", func(s *Step) *ConsulStep { return s.Consul })},
	KindRotateCA: {fields: []string{"manager", "caCert", "caKey", "nodeCertExpiry", "rotateWorkerToken", "rotateManagerToken"},
		read: readRotateCA, normalize: settingsOf("rotateCA", func(s *Step) *RotateCAStep { return s.RotateCA })},
	KindCheckCertificates: {fields: []string{"manager", "minValidity", "action", "nodeCertExpiry"}, read: readCheckCertificates,
		normalize: settingsOf("checkCertificates", func(s *Step) *CheckCertificatesStep { return s.CheckCertificates })},
	KindDeployService: {fields: serviceFields, read: readService, normalize: normalizeService},
	KindUpdateService: {fields: serviceFields, read: readService, normalize: normalizeService},
	KindRollingNodeUpgrade: {fields: []string{"source", "version", "mirror", "packages", "daemonConfig", "users",
		"manager", "maxUnavailable", "approval", "backup"}, read: readRollingUpgrade,
		normalize: settingsOf("upgrade", func(s *Step) *RollingUpgradeStep { return s.Upgrade })},
	KindDeployStack: {fields: stackFields, read: readStack,
		normalize: settingsOf("stack", func(s *Step) *StackStep { return s.Stack })},
	KindBuildImage: {fields: []string{"context", "dockerfile", "tag", "args", "target", "builder", "registryAuth"},
		read: readBuildImage, normalize: settingsOf("buildImage", func(s *Step) *BuildImageStep { return s.BuildImage })},
	KindRemoveService: {fields: []string{"service", "manager"}, read: readRemove, normalize: normalizeRemove},
	KindRemoveStack:   {fields: []string{"stack", "manager"}, read: readRemove, normalize: normalizeRemove},
	KindRemoveNetwork: {fields: []string{"network", "manager"}, read: readRemove, normalize: normalizeRemove},
	KindRemoveVolume:  {fields: []string{"volume"}, read: readRemove, normalize: normalizeRemove},
}

// Kinds lists the step kinds, sorted.
func Kinds() []string { return slices.Clone(kindList) }

// kindList is the step kinds, sorted once: workflow code may not range over a map.
var kindList = sortedKinds()

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
func kindNames() string { return strings.Join(kindList, ", ") }

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

	// The kind comes first: it decides which other fields are allowed. A missing or
	// unknown kind is reported by Normalize.
	var kind *stepKind
	if n, p := m.get("kind"); n != nil {
		if k, ok := f.str(n, p); ok {
			s.Kind = k
			if sk, known := stepKinds[k]; known {
				kind = &sk
			}
		}
	}
	f.checkStepKeys(m, kind, s.Kind)

	if n, p := m.get("name"); n != nil {
		if name, ok := f.nonEmptyStr(n, p); ok {
			if first, dup := names[name]; dup {
				f.errorAt(n, p, "duplicate step name %s (first used at line %d)", quote(name), first.Line)
			} else {
				names[name] = n
			}
			s.Name = name
		}
	}
	c.settled = nil
	if n, p := m.get("hosts"); n != nil {
		if sel, ok := f.selectors(n, p); ok {
			s.Hosts = c.inv.resolve(f, n, p, sel)
		}
		if len(s.Hosts) == 0 {
			c.settle("hosts") // reported, or the inventory is incomplete
		}
	}
	if n, p := m.get("parallel"); n != nil {
		s.Parallel, _ = f.anyInteger(n, p)
	}
	if n, p := m.get("maxFailPercent"); n != nil {
		s.MaxFailPercent, _ = f.anyInteger(n, p)
	}
	if n, p := m.get("timeout"); n != nil {
		d, _ := f.anyDuration(n, p)
		s.Timeout = Duration(d)
	}
	if n, p := m.get("attempts"); n != nil {
		s.Attempts, _ = f.anyInteger(n, p)
	}
	if kind != nil {
		kind.read(f, m, &s, c)
	}
	f.normalizeStep(m, &s, c)
	if kind != nil {
		f.checkFieldUse(m, &s)
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
		for _, k := range kindList {
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

// stepNameProblem says what is wrong with a step name, or "": free text for people,
// on one line.
func stepNameProblem(s string) string {
	switch {
	case utf8.RuneCountInString(s) > maxStepName:
		return fmt.Sprintf("must be at most %d characters, got %d", maxStepName, utf8.RuneCountInString(s))
	case strings.ContainsFunc(s, unicode.IsControl):
		return "must be one line of text without control characters"
	case strings.TrimSpace(s) != s:
		return "must not start or end with spaces"
	}
	return ""
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
