package playbooks

// readConsul reads the fields of a consulBootstrap step.
func readConsul(f *file, m *fields, s *Step, c *stepContext) {
	cs := &ConsulStep{Source: ConsulFromFile, Datacenter: "dc1"}
	s.Consul = cs
	if n, p := m.get("servers"); n != nil {
		cs.Servers = f.stepSubset(n, p, s, c, "servers")
	} else {
		cs.Servers = s.Hosts
	}
	// TODO(consul): source, binary, sha256/sha256sums, url, version, datacenter,
	// gossipKeyFile (default ~/.config/clusterflow/consul-gossip.key), bindInterface.
}
