package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Names and numbers of the lab. The docker-compose.yml at the repository root repeats
// them (network, subnet, addresses, labels, container names): keep the two in step.
const (
	// labName names the bridge network and prefixes container and volume names.
	labName = "clusterflow-lab"

	// labelLab is set (to labName) on every container, volume and network of the lab;
	// `lab down` removes whatever carries it.
	labelLab = "io.clusterflow.lab"
	// labelNode holds the node name on node containers and their volumes.
	labelNode = "io.clusterflow.lab.node"
	// labelContextHash on an image is the hash of the build context it was built from.
	labelContextHash = "io.clusterflow.lab.context-hash"
	// labelBase marks a base image that `lab images` made with debootstrap.
	labelBase = "io.clusterflow.lab.base"

	// labSubnet is the lab network; node i (0-based) has address .11+i. Addresses the
	// engine hands out on its own (to containers that join without a fixed address, such
	// as the compose worker) come from labIPRange, away from the nodes.
	labSubnet  = "10.211.73.0/24"
	labGateway = "10.211.73.1"
	labIPRange = "10.211.73.128/25"
	firstHost  = 11

	// maxNodes is the most nodes `lab up --nodes` accepts: master and slave01..slave08.
	maxNodes     = 9
	defaultNodes = 3

	baseImage     = "debian:bookworm"
	nodeImage     = "clusterflow-node:bookworm"
	prebakedImage = "clusterflow-node:bookworm-docker"

	// sshPort is where every node's sshd listens.
	sshPort = 22
	// nodeUser is the account clusterflow logs in as on lab nodes.
	nodeUser = "root"
)

// node is one lab host.
type node struct {
	Name    string     // host name and inventory name: master, slave01, ...
	Index   int        // 0 for master
	Address netip.Addr // fixed address on the lab network
}

// Container is the name of the node's container.
func (n node) Container() string { return labName + "-" + n.Name }

// Volume is the name of the volume holding the node's /var/lib/docker.
func (n node) Volume() string { return labName + "-" + n.Name + "-docker" }

// Groups are the inventory groups of the node: master manages, the others work.
func (n node) Groups() []string {
	if n.Index == 0 {
		return []string{"managers"}
	}
	return []string{"workers"}
}

// nodeAt returns the node with the given 0-based index.
func nodeAt(i int) node {
	name := "master"
	if i > 0 {
		name = fmt.Sprintf("slave%02d", i)
	}
	base := netip.MustParsePrefix(labSubnet).Addr().As4()
	base[3] = byte(firstHost + i)
	return node{Name: name, Index: i, Address: netip.AddrFrom4(base)}
}

// labNodes returns the first n nodes: master, slave01, ... .
func labNodes(n int) ([]node, error) {
	if n < 1 || n > maxNodes {
		return nil, fmt.Errorf("--nodes must be between 1 and %d, not %d", maxNodes, n)
	}
	nodes := make([]node, n)
	for i := range nodes {
		nodes[i] = nodeAt(i)
	}
	return nodes, nil
}

// nodeByName finds a node by its name, whether or not it runs.
func nodeByName(name string) (node, bool) {
	switch {
	case name == "master":
		return nodeAt(0), true
	case strings.HasPrefix(name, "slave") && len(name) == len("slave01"):
		i, err := strconv.Atoi(name[len("slave"):])
		if err == nil && i >= 1 && i < maxNodes {
			return nodeAt(i), true
		}
	}
	return node{}, false
}

// paths are the lab's files on the machine that runs `lab`.
type paths struct {
	Dir        string // the lab state directory
	Key        string // private key of the lab, OpenSSH format, 0600
	PubKey     string
	KnownHosts string
	Inventory  string
}

// statePaths resolves the state directory: $CLUSTERFLOW_STATE_DIR/lab, or
// .clusterflow/lab under the current directory.
func statePaths() (paths, error) {
	base := os.Getenv("CLUSTERFLOW_STATE_DIR")
	if base == "" {
		base = ".clusterflow"
	}
	dir, err := filepath.Abs(filepath.Join(base, "lab"))
	if err != nil {
		return paths{}, fmt.Errorf("state directory: %w", err)
	}
	return paths{
		Dir:        dir,
		Key:        filepath.Join(dir, "id_ed25519"),
		PubKey:     filepath.Join(dir, "id_ed25519.pub"),
		KnownHosts: filepath.Join(dir, "known_hosts"),
		Inventory:  filepath.Join(dir, "inventory.yaml"),
	}, nil
}

// cacheDir is where the debootstrap root file system tarball is kept:
// $CLUSTERFLOW_CACHE_DIR, else /var/cache/clusterflow for root, else the user cache.
func cacheDir() (string, error) {
	if d := os.Getenv("CLUSTERFLOW_CACHE_DIR"); d != "" {
		return filepath.Abs(d)
	}
	if os.Geteuid() == 0 {
		return "/var/cache/clusterflow", nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache directory: %w (set CLUSTERFLOW_CACHE_DIR)", err)
	}
	return filepath.Join(d, "clusterflow"), nil
}
