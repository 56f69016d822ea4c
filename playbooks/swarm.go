package playbooks

import (
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/clusterflow/clusterflow/internal/rules"
)

// Swarm limits and patterns.
const maxNetworks = 50

var (
	// dockerName is what the engine accepts as the name of a network or a service.
	dockerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	// labelKey is a node or network label key (reverse-DNS style keys included).
	labelKey = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_./-]{0,127}$`)
)

// reservedNetworks are the networks the engine makes itself.
var reservedNetworks = []string{"ingress", "bridge", "host", "none", "docker_gwbridge"}

// readSwarmInit reads the fields of a swarmInit step.
func readSwarmInit(f *file, m *fields, s *Step, c *stepContext) {
	w := &SwarmInitStep{}
	s.SwarmInit = w
	if n, p := m.get("managers"); n != nil {
		w.Managers = f.stepSubset(n, p, c)
	}
	if n, p := m.get("advertiseAddr"); n != nil {
		w.AdvertiseAddr, _ = f.nonEmptyStr(n, p)
	}
	if n, p := m.get("dataPathAddr"); n != nil {
		w.DataPathAddr, _ = f.nonEmptyStr(n, p)
	}
	if n, p := m.get("listenAddr"); n != nil {
		w.ListenAddr, _ = f.nonEmptyStr(n, p)
	}
	if n, p := m.get("labels"); n != nil {
		w.Labels = f.nodeLabels(n, p)
	}
	if n, p := m.get("networks"); n != nil {
		w.Networks = f.overlayNetworks(n, p)
	}
}

// Normalize applies a swarmInit step's default (the step's first host is the
// manager) and checks its settings.
func (w *SwarmInitStep) Normalize(sc Scope) Problems {
	var ps Problems
	if len(w.Managers) == 0 && len(sc.Hosts) > 0 {
		w.Managers = sc.Hosts[:1]
	}
	sc.stepRef(&ps, "managers", w.Managers)
	if why := advertiseProblem(w.AdvertiseAddr, true); why != "" {
		ps.add("advertiseAddr", "%s", why)
	}
	if why := advertiseProblem(w.DataPathAddr, false); why != "" {
		ps.add("dataPathAddr", "%s", why)
	}
	if w.ListenAddr != "" {
		if _, err := netip.ParseAddrPort(w.ListenAddr); err != nil {
			ps.add("listenAddr", "must be IP:port, such as 0.0.0.0:2377, got %s", quote(w.ListenAddr))
		}
	}
	//workflowcheck:ignore sorted right away: the problems do not depend on map order
	for _, host := range slices.Sorted(maps.Keys(w.Labels)) {
		field := keyPath("labels", host)
		if len(sc.Hosts) > 0 && !slices.Contains(sc.Hosts, host) {
			ps = append(ps, Problem{Field: field, Key: true,
				Msg: "labels are given per host of the step; " + quote(host) + " is not one (the step's hosts: " + strings.Join(sc.Hosts, ", ") + ")"})
			continue
		}
		ps.labelKeys(field, w.Labels[host])
	}
	if len(w.Networks) > maxNetworks {
		ps.add("networks", "lists %d networks; the limit is %d", len(w.Networks), maxNetworks)
	}
	for i, n := range w.Networks {
		ps.under(indexPath("networks", i), n.normalize(w.Networks[:i]))
	}
	return ps
}

// normalize checks an overlay network; earlier are the networks listed before it.
func (o *OverlayNetwork) normalize(earlier []OverlayNetwork) Problems {
	var ps Problems
	switch {
	case o.Name == "":
		ps.add("name", "is required; give the network a name")
	case !dockerName.MatchString(o.Name):
		ps.add("name", "must be letters, digits and . _ - (at most 63), starting with a letter or digit, got %s", quote(o.Name))
	case slices.ContainsFunc(earlier, func(e OverlayNetwork) bool { return e.Name == o.Name }):
		ps.add("name", "network %s is listed twice", quote(o.Name))
	case slices.Contains(reservedNetworks, o.Name):
		ps.add("name", "%s is a network the engine makes itself; choose another name", quote(o.Name))
	}
	if o.Subnet != "" {
		if pfx, err := netip.ParsePrefix(o.Subnet); err != nil || pfx.Masked() != pfx {
			ps.add("subnet", "must be a network in CIDR form such as 10.20.0.0/24, got %s", quote(o.Subnet))
		}
	}
	ps.labelKeys("labels", o.Labels)
	return ps
}

// labelKeys checks the keys of a map of labels.
func (ps *Problems) labelKeys(field string, labels map[string]string) {
	//workflowcheck:ignore sorted right away: the problems do not depend on map order
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if !labelKey.MatchString(k) {
			ps.add(field, "label key %s must be letters, digits and . _ / - (at most 128), starting with a letter or digit", quote(k))
			return
		}
	}
}

// stepSubset reads a selection (host or group names, or "all"), as swarmInit.managers
// and consulBootstrap.servers are written; Normalize checks that it falls within the
// step's own hosts.
func (f *file) stepSubset(n *yaml.Node, path string, c *stepContext) []string {
	sel, ok := f.selectors(n, path)
	if !ok {
		return nil
	}
	return c.inv.resolve(f, n, path, sel)
}

// advertiseProblem says what is wrong with an advertise or data path address, or "":
// "address" (the inventory address), an interface name, or an IP address (with a
// port when portOK). "" leaves the choice to the engine.
func advertiseProblem(v string, portOK bool) string {
	if v == "" || v == "address" {
		return ""
	}
	if _, err := netip.ParseAddr(v); err == nil {
		return ""
	}
	if rules.InterfaceName(v) {
		return ""
	}
	if host, port, err := net.SplitHostPort(v); err == nil && portOK {
		if _, err := netip.ParseAddr(host); err == nil {
			if p, err := strconv.Atoi(port); err == nil && p > 0 && p < 65536 {
				return ""
			}
		}
	}
	want := `"address" (each host's inventory address), an interface name such as eth1, or an IP address`
	if portOK {
		want += " (with an optional :port)"
	}
	return "must be " + want + ", got " + quote(v)
}

// nodeLabels reads labels: {host: {key: value}}.
func (f *file) nodeLabels(n *yaml.Node, path string) map[string]map[string]string {
	m := f.mapping(n, path)
	if m == nil {
		return nil
	}
	out := map[string]map[string]string{}
	for _, k := range m.keys {
		if labels, ok := f.stringMap(m.vals[k.Value], keyPath(path, k.Value)); ok {
			out[k.Value] = labels
		}
	}
	return out
}

// overlayNetworks reads swarmInit.networks. An entry that cannot be read stays in the
// list, empty, so that the others keep their index.
func (f *file) overlayNetworks(n *yaml.Node, path string) []OverlayNetwork {
	items, ok := f.list(n, path, "networks")
	if !ok {
		return nil
	}
	nets := make([]OverlayNetwork, len(items))
	for i, item := range items {
		p := indexPath(path, i)
		m := f.mapping(item, p)
		if m == nil {
			continue
		}
		f.checkKeys(m, "name", "attachable", "encrypted", "subnet", "labels")
		o := &nets[i]
		if v, vp := m.get("name"); v != nil {
			o.Name, _ = f.nonEmptyStr(v, vp)
		}
		if v, vp := m.get("attachable"); v != nil {
			o.Attachable, _ = f.boolean(v, vp)
		}
		if v, vp := m.get("encrypted"); v != nil {
			o.Encrypted, _ = f.boolean(v, vp)
		}
		if v, vp := m.get("subnet"); v != nil {
			o.Subnet, _ = f.nonEmptyStr(v, vp)
		}
		if v, vp := m.get("labels"); v != nil {
			o.Labels, _ = f.stringMap(v, vp)
		}
	}
	return nets
}

// readNode reads the fields of the node operations (promote, demote, drain,
// activate, removeNode).
func readNode(f *file, m *fields, s *Step, _ *stepContext) {
	op := &NodeStep{Op: s.Kind}
	s.Node = op
	op.Manager = f.managerRef(m)
	if n, p := m.get("force"); n != nil {
		op.Force, _ = f.boolean(n, p)
	}
}

// nodeOps are the node operations, the step kinds SwarmNodes runs.
var nodeOps = []string{KindPromote, KindDemote, KindDrain, KindActivate, KindRemoveNode}

// normalizeNode is the Normalize of the node operation kinds: the operation is the
// step's kind.
func normalizeNode(s *Step, sc Scope) Problems {
	if s.Node == nil || s.Node.Op != s.Kind {
		return Problems{{Msg: "kind " + s.Kind + " needs node.op " + quote(s.Kind)}}
	}
	return s.Node.Normalize(sc)
}

// Normalize checks a node operation.
func (op *NodeStep) Normalize(sc Scope) Problems {
	var ps Problems
	if !slices.Contains(nodeOps, op.Op) {
		ps.add("op", "%s is not one of %s", quote(op.Op), strings.Join(nodeOps, ", "))
	}
	sc.inventoryRef(&ps, "manager", op.Manager)
	if op.Force && op.Op != KindRemoveNode {
		ps.add("force", "is only used with %s", KindRemoveNode)
	}
	return ps
}
