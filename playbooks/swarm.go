package playbooks

import (
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Swarm limits and patterns.
const maxNetworks = 50

var (
	// ifaceName is a Linux interface name: at most 15 characters, no slash or space.
	ifaceName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.@-]{0,14}$`)
	// dockerName is what the engine accepts as a network name.
	dockerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	// labelKey is a node or network label key (reverse-DNS style keys included).
	labelKey = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_./-]{0,127}$`)
)

// readSwarmInit reads the fields of a swarmInit step.
func readSwarmInit(f *file, m *fields, s *Step, c *stepContext) {
	w := &SwarmInitStep{}
	s.SwarmInit = w
	if n, p := m.get("managers"); n != nil {
		w.Managers = f.stepSubset(n, p, s, c, "managers")
	} else if len(s.Hosts) > 0 {
		w.Managers = s.Hosts[:1]
	}
	if n, p := m.get("advertiseAddr"); n != nil {
		w.AdvertiseAddr, _ = f.advertise(n, p, true)
	}
	if n, p := m.get("dataPathAddr"); n != nil {
		w.DataPathAddr, _ = f.advertise(n, p, false)
	}
	if n, p := m.get("listenAddr"); n != nil {
		if v, ok := f.nonEmptyStr(n, p); ok {
			if _, err := netip.ParseAddrPort(v); err != nil {
				f.errorAt(n, p, "must be IP:port, such as 0.0.0.0:2377, got %s", quote(v))
			}
			w.ListenAddr = v
		}
	}
	if n, p := m.get("labels"); n != nil {
		w.Labels = f.nodeLabels(n, p, s)
	}
	if n, p := m.get("networks"); n != nil {
		w.Networks = f.overlayNetworks(n, p)
	}
}

// stepSubset reads a selection (host or group names, or "all") that must fall within
// the step's own hosts, as swarmInit.managers and consulBootstrap.servers do.
func (f *file) stepSubset(n *yaml.Node, path string, s *Step, c *stepContext, what string) []string {
	sel, ok := f.selectors(n, path)
	if !ok {
		return nil
	}
	names := c.inv.resolve(f, n, path, sel)
	for _, name := range names {
		if !slices.Contains(s.Hosts, name) {
			f.errorAt(n, path, "%s must be among the step's hosts; %s is not (the step's hosts: %s)", what, quote(name), strings.Join(s.Hosts, ", "))
			return nil
		}
	}
	return names
}

// advertise reads an advertise or data path address: "address" (the inventory
// address), an interface name, or an IP address with an optional port.
func (f *file) advertise(n *yaml.Node, path string, portOK bool) (string, bool) {
	v, ok := f.nonEmptyStr(n, path)
	if !ok {
		return "", false
	}
	if v == "address" || ifaceName.MatchString(v) {
		if _, err := netip.ParseAddr(v); err != nil { // "eth0", not "10"
			return v, true
		}
	}
	if _, err := netip.ParseAddr(v); err == nil {
		return v, true
	}
	if host, port, err := net.SplitHostPort(v); err == nil && portOK {
		if _, err := netip.ParseAddr(host); err == nil {
			if p, err := strconv.Atoi(port); err == nil && p > 0 && p < 65536 {
				return v, true
			}
		}
	}
	want := `"address" (each host's inventory address), an interface name such as eth1, or an IP address`
	if portOK {
		want += " (with an optional :port)"
	}
	f.errorAt(n, path, "must be %s, got %s", want, quote(v))
	return "", false
}

// nodeLabels reads labels: {host: {key: value}} for hosts of the step.
func (f *file) nodeLabels(n *yaml.Node, path string, s *Step) map[string]map[string]string {
	m := f.mapping(n, path)
	if m == nil {
		return nil
	}
	out := map[string]map[string]string{}
	for _, k := range m.keys {
		p := keyPath(path, k.Value)
		if !slices.Contains(s.Hosts, k.Value) {
			f.errorAt(k, p, "labels are given per host of the step; %s is not one (the step's hosts: %s)", quote(k.Value), strings.Join(s.Hosts, ", "))
			continue
		}
		if labels, ok := f.labelMap(m.vals[k.Value], p); ok {
			out[k.Value] = labels
		}
	}
	return out
}

// labelMap reads a map of label keys to string values.
func (f *file) labelMap(n *yaml.Node, path string) (map[string]string, bool) {
	labels, ok := f.stringMap(n, path)
	if !ok {
		return nil, false
	}
	for k := range labels {
		if !labelKey.MatchString(k) {
			f.errorAt(n, path, "label key %s must be letters, digits and . _ / - (at most 128), starting with a letter or digit", quote(k))
			return nil, false
		}
	}
	return labels, true
}

// overlayNetworks reads swarmInit.networks.
func (f *file) overlayNetworks(n *yaml.Node, path string) []OverlayNetwork {
	items, ok := f.list(n, path, "networks")
	if !ok {
		return nil
	}
	if len(items) > maxNetworks {
		f.errorAt(n, path, "lists %d networks; the limit is %d", len(items), maxNetworks)
		return nil
	}
	var nets []OverlayNetwork
	for i, item := range items {
		p := indexPath(path, i)
		m := f.mapping(item, p)
		if m == nil {
			continue
		}
		f.checkKeys(m, "name", "attachable", "encrypted", "subnet", "labels")
		var o OverlayNetwork
		if v, vp := m.get("name"); v == nil {
			f.missing(m, "name", "give the network a name")
		} else if name, ok := f.nonEmptyStr(v, vp); ok {
			switch {
			case !dockerName.MatchString(name):
				f.errorAt(v, vp, "must be letters, digits and . _ - (at most 63), starting with a letter or digit, got %s", quote(name))
			case slices.ContainsFunc(nets, func(o OverlayNetwork) bool { return o.Name == name }):
				f.errorAt(v, vp, "network %s is listed twice", quote(name))
			case name == "ingress" || name == "bridge" || name == "host" || name == "none" || name == "docker_gwbridge":
				f.errorAt(v, vp, "%s is a network the engine makes itself; choose another name", quote(name))
			}
			o.Name = name
		}
		if v, vp := m.get("attachable"); v != nil {
			o.Attachable, _ = f.boolean(v, vp)
		}
		if v, vp := m.get("encrypted"); v != nil {
			o.Encrypted, _ = f.boolean(v, vp)
		}
		if v, vp := m.get("subnet"); v != nil {
			if sub, ok := f.nonEmptyStr(v, vp); ok {
				if pfx, err := netip.ParsePrefix(sub); err != nil || pfx.Masked() != pfx {
					f.errorAt(v, vp, "must be a network in CIDR form such as 10.20.0.0/24, got %s", quote(sub))
				}
				o.Subnet = sub
			}
		}
		if v, vp := m.get("labels"); v != nil {
			o.Labels, _ = f.labelMap(v, vp)
		}
		nets = append(nets, o)
	}
	return nets
}

// readNode reads the fields of the node operations (promote, demote, drain,
// activate, removeNode).
func readNode(f *file, m *fields, s *Step, c *stepContext) {
	op := &NodeStep{Op: s.Kind}
	s.Node = op
	if n, p := m.get("manager"); n != nil {
		if name, ok := f.nonEmptyStr(n, p); ok {
			if c.inv.byName[name] == nil && !c.inv.incomplete {
				f.errorAt(n, p, "host %s is not in the inventory (%s)", quote(name), c.inv.names())
			}
			op.Manager = name
		}
	}
	if n, p := m.get("force"); n != nil {
		op.Force, _ = f.boolean(n, p)
	}
}
