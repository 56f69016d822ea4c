package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Names and numbers of the lab. A lab has a name (default defaultLabName); its
// network, bridge interface, containers, volumes, labels, subnet and state directory
// derive from it (labSpec), so that several labs live side by side on one engine. The
// docker-compose.yml at the repository root repeats the default lab's values (network,
// subnet, addresses, labels, container names): keep the two in step.
const (
	// defaultLabName is the lab's name unless --name or CLUSTERFLOW_LAB says otherwise.
	defaultLabName = "clusterflow-lab"
	// envLabName names the lab for every lab command, like --name.
	envLabName = "CLUSTERFLOW_LAB"

	// labelLab is set (to the lab's name) on every container, volume and network of
	// a lab; `lab down` removes whatever carries it with the lab's name.
	labelLab = "io.clusterflow.lab"
	// labelNode holds the node name on node containers and their volumes.
	labelNode = "io.clusterflow.lab.node"
	// labelState on a lab network is the state directory of the `lab up` that made it.
	labelState = "io.clusterflow.lab.state"
	// labelContextHash on an image is the hash of the build context it was built from.
	labelContextHash = "io.clusterflow.lab.context-hash"
	// labelBase marks a base image that `lab images` made with debootstrap.
	labelBase = "io.clusterflow.lab.base"

	// defaultSubnet and defaultBridge are the default lab's network; other labs get a
	// /24 of labSubnets and a bridge name from their name's hash (labSpec).
	defaultSubnet = "10.211.73.0/24"
	defaultBridge = "cf-lab0"
	labSubnets    = "10.211.0.0/16"
	// Node i (0-based) has address .firstHost+i of its lab's subnet, the repository
	// container .repoHost. Addresses the engine hands out on its own (to containers
	// that join without a fixed address, such as the compose worker) come from the
	// upper half (.128/25), away from them.
	firstHost = 11
	repoHost  = 10

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

// labNamePattern is what a lab name may be: it prefixes container and volume names
// and is the network's name, so lower-case letters, digits and inner hyphens, at most
// 40 characters.
var labNamePattern = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$`)

// labSpec is one lab: its name and everything that derives from it.
type labSpec struct {
	Name   string
	Subnet netip.Prefix // a /24
	Bridge string       // the host side interface of the lab network
}

// newLabSpec checks a lab name and derives the lab's subnet and bridge from it: the
// default lab has 10.211.73.0/24 and cf-lab0; any other name a /24 of 10.211.0.0/16
// chosen by the name's SHA-256 (never the default lab's) and cf-HASH. Whether that
// subnet is free is checked when the network is made (ensureNetwork).
func newLabSpec(name string) (labSpec, error) {
	if !labNamePattern.MatchString(name) {
		return labSpec{}, fmt.Errorf("lab name %q: use 1 to 40 lower-case letters, digits and hyphens, starting with a letter and not ending with a hyphen", name)
	}
	if name == defaultLabName {
		return labSpec{Name: name, Subnet: netip.MustParsePrefix(defaultSubnet), Bridge: defaultBridge}, nil
	}
	h := sha256.Sum256([]byte(name))
	base := netip.MustParsePrefix(labSubnets).Addr().As4()
	def := netip.MustParsePrefix(defaultSubnet).Addr().As4()
	third := int(binary.BigEndian.Uint16(h[:2]) % 255) // 255 values: all but the default's
	if third >= int(def[2]) {
		third++
	}
	base[2] = byte(third)
	return labSpec{
		Name:   name,
		Subnet: netip.PrefixFrom(netip.AddrFrom4(base), 24),
		Bridge: "cf-" + hex.EncodeToString(h[:])[:10],
	}, nil
}

// hostAddr is address .i of the lab's subnet.
func (s labSpec) hostAddr(i int) netip.Addr {
	a := s.Subnet.Addr().As4()
	a[3] = byte(i)
	return netip.AddrFrom4(a)
}

// Network is the name of the lab's bridge network: the lab's name.
func (s labSpec) Network() string { return s.Name }

// Gateway is the host's address on the lab network.
func (s labSpec) Gateway() netip.Addr { return s.hostAddr(1) }

// IPRange is where the engine picks addresses of containers that join on their own.
func (s labSpec) IPRange() netip.Prefix { return netip.PrefixFrom(s.hostAddr(128), 25) }

// RepoContainer is the name of the container that serves the lab apt repository.
func (s labSpec) RepoContainer() string { return s.Name + "-repo" }

// RepoAddress is the repository's fixed address: below the nodes, outside IPRange.
func (s labSpec) RepoAddress() netip.Addr { return s.hostAddr(repoHost) }

// node is one lab host.
type node struct {
	Name    string     // host name and inventory name: master, slave01, ...
	Index   int        // 0 for master
	Address netip.Addr // fixed address on the lab network
	lab     string     // the lab's name
}

// Container is the name of the node's container.
func (n node) Container() string { return n.lab + "-" + n.Name }

// Volume is the name of the volume holding the node's /var/lib/docker.
func (n node) Volume() string { return n.lab + "-" + n.Name + "-docker" }

// Groups are the inventory groups of the node: master manages, the others work.
func (n node) Groups() []string {
	if n.Index == 0 {
		return []string{"managers"}
	}
	return []string{"workers"}
}

// nodeAt returns the lab's node with the given 0-based index.
func (s labSpec) nodeAt(i int) node {
	name := "master"
	if i > 0 {
		name = fmt.Sprintf("slave%02d", i)
	}
	return node{Name: name, Index: i, Address: s.hostAddr(firstHost + i), lab: s.Name}
}

// nodes returns the first n nodes: master, slave01, ... .
func (s labSpec) nodes(n int) ([]node, error) {
	if n < 1 || n > maxNodes {
		return nil, fmt.Errorf("--nodes must be between 1 and %d, not %d", maxNodes, n)
	}
	nodes := make([]node, n)
	for i := range nodes {
		nodes[i] = s.nodeAt(i)
	}
	return nodes, nil
}

// nodeByName finds a node by its name, whether or not it runs.
func (s labSpec) nodeByName(name string) (node, bool) {
	switch {
	case name == "master":
		return s.nodeAt(0), true
	case strings.HasPrefix(name, "slave") && len(name) == len("slave01"):
		i, err := strconv.Atoi(name[len("slave"):])
		if err == nil && i >= 1 && i < maxNodes {
			return s.nodeAt(i), true
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

// statePaths resolves the lab's state directory under $CLUSTERFLOW_STATE_DIR, or
// .clusterflow under the current directory: lab/ for the default lab, labs/NAME/ for
// any other.
func (s labSpec) statePaths() (paths, error) {
	base := os.Getenv("CLUSTERFLOW_STATE_DIR")
	if base == "" {
		base = ".clusterflow"
	}
	rel := "lab"
	if s.Name != defaultLabName {
		rel = filepath.Join("labs", s.Name)
	}
	dir, err := filepath.Abs(filepath.Join(base, rel))
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

// command is how the user runs a lab subcommand on this lab, for messages.
func (s labSpec) command(sub string) string {
	if s.Name == defaultLabName {
		return "go run ./lab " + sub
	}
	return "go run ./lab --name " + s.Name + " " + sub
}
