package playbooks

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// Inventory: the playbook's spec.inventory plus every kind: Inventory file it
// includes. Hosts are read in this order, which is also the order of Plan.Hosts and
// of the hosts of every step: the included files in the order of
// spec.inventory.include, each in file order, then spec.inventory.hosts.

const (
	defaultKnownHosts = "~/.ssh/known_hosts"
	maxHosts          = 1000 // per playbook, all files together
)

// Fields of an inventory host, and the subset that defaults may set.
var (
	defaultsKeys = []string{"user", "port", "identityFile", "useAgent", "sudo", "jump", "knownHostsFile"}
	hostKeys     = append([]string{"name", "address", "groups"}, defaultsKeys...)
)

// setting is one host field as read from a host or from defaults.
type setting[T any] struct {
	set  bool // the field is present
	ok   bool // and its value is valid
	v    T
	f    *file
	node *yaml.Node
	path string
}

// read reads an optional field of m with dec.
func read[T any](f *file, m *fields, key string, dec func(*yaml.Node, string) (T, bool)) setting[T] {
	n, p := m.get(key)
	if n == nil {
		return setting[T]{}
	}
	v, ok := dec(n, p)
	return setting[T]{set: true, ok: ok, v: v, f: f, node: n, path: p}
}

// or returns s when it is set and def otherwise: a host's own field wins over defaults.
func (s setting[T]) or(def setting[T]) setting[T] {
	if s.set {
		return s
	}
	return def
}

// hostFields are the fields that defaults may give a host.
type hostFields struct {
	user, identityFile, jump, knownHostsFile setting[string]
	port                                     setting[int]
	useAgent, sudo                           setting[bool]
}

func (f *file) hostFields(m *fields) hostFields {
	return hostFields{
		user:           read(f, m, "user", f.user),
		port:           read(f, m, "port", func(n *yaml.Node, p string) (int, bool) { return f.integer(n, p, 1, 65535) }),
		identityFile:   read(f, m, "identityFile", f.sshFile),
		useAgent:       read(f, m, "useAgent", f.boolean),
		sudo:           read(f, m, "sudo", f.boolean),
		jump:           read(f, m, "jump", f.nameRef),
		knownHostsFile: read(f, m, "knownHostsFile", f.sshFile),
	}
}

// unreadableDefaults stands for defaults that could not be read (already reported):
// every field counts as given, so hosts are not also reported as lacking them.
func unreadableDefaults() hostFields {
	return hostFields{
		user:           setting[string]{set: true},
		port:           setting[int]{set: true},
		identityFile:   setting[string]{set: true},
		useAgent:       setting[bool]{set: true},
		sudo:           setting[bool]{set: true},
		jump:           setting[string]{set: true},
		knownHostsFile: setting[string]{set: true},
	}
}

func (h hostFields) or(def hostFields) hostFields {
	return hostFields{
		user:           h.user.or(def.user),
		port:           h.port.or(def.port),
		identityFile:   h.identityFile.or(def.identityFile),
		useAgent:       h.useAgent.or(def.useAgent),
		sudo:           h.sudo.or(def.sudo),
		jump:           h.jump.or(def.jump),
		knownHostsFile: h.knownHostsFile.or(def.knownHostsFile),
	}
}

// hostEntry is a host being resolved, with where its fields came from.
type hostEntry struct {
	host      Host
	f         *file
	nameNode  *yaml.Node
	jump      setting[string]
	ownJump   bool // jump was set on the host, not by defaults
	groupRefs []groupRef
}

type groupRef struct {
	name string
	node *yaml.Node
	path string
}

type inventory struct {
	policy string
	hosts  []*hostEntry
	byName map[string]*hostEntry
	groups map[string][]string // group -> member host names, in inventory order
	// incomplete is set when some hosts could not be read (a missing include, a host
	// without a name). References to unknown hosts are then not reported: they would
	// only repeat the first error.
	incomplete bool
	included   map[string]*yaml.Node // absolute path of an included file -> its include entry
	full       bool                  // maxHosts reached and reported
	listing    string                // names(), computed once
}

func newInventory(policy string) *inventory {
	return &inventory{
		policy:   policy,
		byName:   map[string]*hostEntry{},
		groups:   map[string][]string{},
		included: map[string]*yaml.Node{},
	}
}

// playbookInventory reads spec.inventory of a playbook.
func (inv *inventory) playbookInventory(f *file, n *yaml.Node, path string) {
	m := f.mapping(n, path)
	if m == nil {
		inv.incomplete = true
		return
	}
	f.checkKeys(m, "include", "defaults", "hosts")
	if n, p := m.get("include"); n != nil {
		inv.includes(f, n, p)
	}
	inv.hostsAndDefaults(f, m)
	if len(inv.hosts) == 0 && !inv.incomplete {
		f.errorAt(n, path, "the inventory has no hosts; list them under hosts or include an inventory file")
		inv.incomplete = true // keeps steps from reporting every host they name
	}
}

// hostsAndDefaults reads the defaults and hosts fields of m, a playbook's
// spec.inventory or an inventory file's spec.
func (inv *inventory) hostsAndDefaults(f *file, m *fields) {
	var defs hostFields
	defsPath := fieldPath(m.path, "defaults")
	if n, p := m.get("defaults"); n != nil {
		if dm := f.mapping(n, p); dm != nil {
			f.checkKeys(dm, defaultsKeys...)
			defs = f.hostFields(dm)
		} else {
			defs = unreadableDefaults()
		}
	}
	n, p := m.get("hosts")
	if n == nil {
		return
	}
	items, ok := f.list(n, p, "hosts")
	if !ok {
		inv.incomplete = true
		return
	}
	for i, item := range items {
		if len(inv.hosts) >= maxHosts {
			if !inv.full {
				f.errorAt(item, indexPath(p, i), "too many hosts: the limit is %d per playbook, included files counted", maxHosts)
				inv.full, inv.incomplete = true, true
			}
			return
		}
		inv.host(f, item, indexPath(p, i), defs, defsPath)
	}
}

// host reads one inventory host, applies defs and adds it to the inventory.
func (inv *inventory) host(f *file, n *yaml.Node, path string, defs hostFields, defsPath string) {
	m := f.mapping(n, path)
	if m == nil {
		inv.incomplete = true
		return
	}
	f.checkKeys(m, hostKeys...)
	e := &hostEntry{f: f}
	h := &e.host
	h.HostKeyPolicy = inv.policy

	if n, p := m.get("name"); n == nil {
		f.missing(m, "name", "each host needs a unique name (%s)", nameRule)
		inv.incomplete = true
	} else {
		h.Name = f.name63(n, p)
		e.nameNode = n
		if h.Name == "all" {
			f.errorAt(n, p, `"all" is reserved: in a step's hosts it selects every host`)
		}
	}
	if n, p := m.get("address"); n == nil {
		f.missing(m, "address", "give the host's IP address or DNS name")
	} else if s, ok := f.str(n, p); ok {
		if problem := addressProblem(s); problem != "" {
			f.errorAt(n, p, "%s", problem)
		}
		h.Address = s
	}
	if n, p := m.get("groups"); n != nil {
		if items, ok := f.list(n, p, "group names"); ok {
			seen := map[string]bool{}
			for i, item := range items {
				ip := indexPath(p, i)
				g := f.nameRefOrAll(item, ip)
				if g != "" && !seen[g] {
					seen[g] = true
					h.Groups = append(h.Groups, g)
					e.groupRefs = append(e.groupRefs, groupRef{g, item, ip})
				}
			}
		}
	}

	own := f.hostFields(m)
	eff := own.or(defs)
	where := fmt.Sprintf("set it on the host or in %s", defsPath)
	if !eff.user.set {
		f.missing(m, "user", "%s", where)
	}
	h.User = eff.user.v
	h.Port = 22
	if eff.port.set {
		h.Port = eff.port.v
	}
	h.IdentityFile = eff.identityFile.v
	h.UseAgent = eff.useAgent.v
	h.Sudo = eff.sudo.v
	agentUnclear := eff.useAgent.set && !eff.useAgent.ok // already reported
	if !eff.identityFile.set && !h.UseAgent && !agentUnclear {
		f.errorAt(m.node, fieldPath(path, "identityFile"), "is required: the host has no SSH credentials; set identityFile or useAgent: true, on the host or in %s", defsPath)
	}
	h.KnownHostsFile = eff.knownHostsFile.v
	if !eff.knownHostsFile.set {
		kh, err := f.localPath(defaultKnownHosts)
		if err == nil {
			kh, err = f.allowed(kh, workerfs.SSH)
		}
		if err != nil {
			f.errorAt(m.node, fieldPath(path, "knownHostsFile"), "cannot use the default %s: %v; set knownHostsFile", defaultKnownHosts, err)
		}
		h.KnownHostsFile = kh
	}
	e.jump, e.ownJump = eff.jump, own.jump.set

	if e.nameNode == nil || h.Name == "" {
		return
	}
	if first, dup := inv.byName[h.Name]; dup {
		fn := first.nameNode
		f.errorAt(e.nameNode, fieldPath(path, "name"), "duplicate host name %s (first defined at %s:%d:%d)", quote(h.Name), first.f.name, fn.Line, fn.Column)
		return
	}
	inv.byName[h.Name] = e
	inv.hosts = append(inv.hosts, e)
}

// includes reads the files listed in spec.inventory.include.
func (inv *inventory) includes(f *file, n *yaml.Node, path string) {
	items, ok := f.list(n, path, "inventory file paths")
	if !ok {
		inv.incomplete = true
		return
	}
	for i, item := range items {
		p := indexPath(path, i)
		rel, ok := f.nonEmptyStr(item, p)
		if !ok {
			inv.incomplete = true
			continue
		}
		abs, err := f.localPath(rel)
		if err == nil {
			abs, err = f.allowed(abs, workerfs.Content)
		}
		if err != nil {
			f.errorAt(item, p, "%v", err)
			inv.incomplete = true
			continue
		}
		if first, dup := inv.included[abs]; dup {
			f.errorAt(item, p, "%s is already included at line %d", quote(rel), first.Line)
			continue
		}
		inv.included[abs] = item
		data, err := readLimited(abs, maxFileSize)
		if err != nil {
			f.errorAt(item, p, "cannot read included file %s (%s): %v", quote(rel), abs, err)
			inv.incomplete = true
			continue
		}
		show := abs
		if !filepath.IsAbs(rel) && !strings.HasPrefix(rel, "~") {
			show = filepath.Join(f.showDir, rel)
		}
		inc := &file{name: show, dir: filepath.Dir(abs), showDir: filepath.Dir(show), r: f.r}
		f.r.file(show)
		inv.inventoryFile(inc, data)
	}
}

// inventoryFile reads an included kind: Inventory file. Its field paths start at its
// own root (spec.hosts[0].port) and its defaults apply to its own hosts only.
func (inv *inventory) inventoryFile(f *file, data []byte) {
	root := f.parseDocument(data)
	if root == nil {
		inv.incomplete = true
		return
	}
	if root.Kind != yaml.MappingNode {
		// Not quoted: see header.
		f.errorAt(root, "", "is not an inventory file: expected a YAML mapping with apiVersion: %s and kind: %s", APIVersion, kindInventory)
		inv.incomplete = true
		return
	}
	top := f.mapping(root, "")
	if top == nil || !f.header(top, kindInventory) {
		inv.incomplete = true
		return
	}
	f.checkKeys(top, "apiVersion", "kind", "metadata", "spec")
	if n, p := top.get("metadata"); n != nil {
		f.metadata(n, p, false)
	}
	n, p := top.get("spec")
	if n == nil {
		f.missing(top, "spec", "an inventory file lists its hosts under spec.hosts")
		inv.incomplete = true
		return
	}
	spec := f.mapping(n, p)
	if spec == nil {
		inv.incomplete = true
		return
	}
	f.checkKeys(spec, "defaults", "hosts")
	inv.hostsAndDefaults(f, spec)
}

// finish checks what needs the whole inventory (group names, jumps), fills Host.Via
// and returns the hosts in inventory order.
func (inv *inventory) finish() []Host {
	for _, e := range inv.hosts {
		for _, g := range e.groupRefs {
			if _, clash := inv.byName[g.name]; clash {
				e.f.errorAt(g.node, g.path, "group %s has the same name as a host; rename one of them", quote(g.name))
				continue
			}
			inv.groups[g.name] = append(inv.groups[g.name], e.host.Name)
		}
	}

	// A jump set by defaults does not apply to the host it names: defaults.jump:
	// bastion gives every host of the file a jump through bastion, except bastion.
	for _, e := range inv.hosts {
		if e.jump.ok && (e.ownJump || e.jump.v != e.host.Name) {
			e.host.Jump = e.jump.v
		}
	}
	for _, e := range inv.hosts {
		j := e.host.Jump
		if j == "" {
			continue
		}
		who := ""
		if !e.ownJump {
			who = fmt.Sprintf("host %s: ", quote(e.host.Name))
		}
		js := e.jump
		target, found := inv.byName[j]
		switch {
		case j == e.host.Name:
			js.f.errorAt(js.node, js.path, "a host cannot jump through itself")
		case !found:
			if !inv.incomplete {
				js.f.errorAt(js.node, js.path, "%sjump host %s is not in the inventory (%s)", who, quote(j), inv.names())
			}
		case target.host.Jump != "":
			js.f.errorAt(js.node, js.path, "%sjump host %s has a jump of its own (%s); only one level of jump is supported", who, quote(j), quote(target.host.Jump))
		default:
			via := target.host
			via.Groups = slices.Clone(via.Groups)
			e.host.Via = &via
		}
	}

	hosts := make([]Host, len(inv.hosts))
	for i, e := range inv.hosts {
		hosts[i] = e.host
	}
	return hosts
}

// names lists the inventory's hosts and groups for messages, shortened when long.
// It is called after finish, when the inventory no longer changes.
func (inv *inventory) names() string {
	if inv.listing == "" {
		inv.listing = inv.makeNames()
	}
	return inv.listing
}

func (inv *inventory) makeNames() string {
	const max = 10
	list := func(names []string) string {
		if len(names) > max {
			return strings.Join(names[:max], ", ") + fmt.Sprintf(", ... (%d in all)", len(names))
		}
		return strings.Join(names, ", ")
	}
	hosts := make([]string, len(inv.hosts))
	for i, e := range inv.hosts {
		hosts[i] = e.host.Name
	}
	s := "hosts: " + list(hosts)
	if len(inv.groups) > 0 {
		s += "; groups: " + list(inv.groupNames())
	}
	return s
}

// groupNames returns the group names in the order they first appear.
func (inv *inventory) groupNames() []string {
	var names []string
	seen := map[string]bool{}
	for _, e := range inv.hosts {
		for _, g := range e.host.Groups {
			if _, ok := inv.groups[g]; ok && !seen[g] {
				seen[g] = true
				names = append(names, g)
			}
		}
	}
	return names
}

// resolve turns a step's host selection (the hosts field n at path) into host names
// in inventory order. It reports names that are neither a host nor a group; "all"
// selects every host.
func (inv *inventory) resolve(f *file, n *yaml.Node, path string, sel []selector) []string {
	want := map[string]bool{}
	seen := map[string]bool{}
	all, unknown := false, false
	for _, s := range sel {
		if seen[s.name] {
			continue // a group is expanded once, however often it is named
		}
		seen[s.name] = true
		switch {
		case s.name == "all":
			all = true
		case inv.byName[s.name] != nil:
			want[s.name] = true
		case inv.groups[s.name] != nil:
			for _, h := range inv.groups[s.name] {
				want[h] = true
			}
		default:
			unknown = true
			if inv.incomplete {
				// The inventory already has errors; this name may be among the
				// hosts that could not be read.
				continue
			}
			msg := fmt.Sprintf("host %s is not in the inventory (%s)", quote(s.name), inv.names())
			if !f.r.terse() {
				candidates := inv.groupNames()
				for _, e := range inv.hosts {
					candidates = append(candidates, e.host.Name)
				}
				if g := suggest(s.name, candidates); g != "" {
					msg += fmt.Sprintf("; did you mean %s?", quote(g))
				}
			}
			f.errorAt(s.node, s.path, "%s", msg)
		}
	}
	var names []string
	for _, e := range inv.hosts {
		if all || want[e.host.Name] {
			names = append(names, e.host.Name)
		}
	}
	if len(names) == 0 && !unknown && !inv.incomplete {
		f.errorAt(n, path, "selects no hosts")
	}
	return names
}

// selector is one entry of a step's hosts field.
type selector struct {
	name string
	node *yaml.Node
	path string
}
