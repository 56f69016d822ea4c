package main

import (
	"fmt"
	"strings"
)

// renderInventory writes the kind: Inventory file of the lab (format described in
// playbooks/doc.go). Paths are relative to the inventory file, so the state directory
// can be mounted anywhere (the compose worker does). Node names are [a-z0-9] and
// addresses are IPs: nothing needs quoting.
func renderInventory(nodes []node) []byte {
	var b strings.Builder
	b.WriteString("# Written by `lab up` (clusterflow lab); rewritten on every run: do not edit.\n")
	b.WriteString("# Include it from a playbook: spec.inventory.include: [../.clusterflow/lab/inventory.yaml]\n")
	b.WriteString("apiVersion: clusterflow.io/v1\n")
	b.WriteString("kind: Inventory\n")
	b.WriteString("spec:\n")
	fmt.Fprintf(&b, "  defaults: {user: %s, port: %d, identityFile: id_ed25519, knownHostsFile: known_hosts}\n", nodeUser, sshPort)
	b.WriteString("  hosts:\n")
	for _, n := range nodes {
		fmt.Fprintf(&b, "    - {name: %s, address: %s, groups: [%s]}\n", n.Name, n.Address, strings.Join(n.Groups(), ", "))
	}
	return []byte(b.String())
}

// renderKnownHosts writes one line per node, in node order.
func renderKnownHosts(lines []string) []byte {
	var b strings.Builder
	b.WriteString("# Host keys of the clusterflow lab nodes, read from each node with docker exec by `lab up`.\n")
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}
