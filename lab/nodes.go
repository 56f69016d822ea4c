package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"golang.org/x/crypto/ssh"
)

// upOptions are the flags of `lab up`.
type upOptions struct {
	Nodes    int
	Prebaked bool // nodes from the image with docker.io installed
	Verbose  bool // show image build output
}

// lab is a connection to the local engine, the lab it acts on and its state paths.
type lab struct {
	cli   *client.Client
	spec  labSpec
	paths paths
	out   io.Writer
}

// running is what the engine says about one node container.
type running struct {
	node    node
	id      string
	state   string // running, exited, created, ...
	image   string // image ID the container was created from
	address string // address on the lab network, "" when not attached
}

// listNodes returns the lab's node containers, in node order, running or not.
func (l *lab) listNodes(ctx context.Context) ([]running, error) {
	f := labFilter(l.spec.Name)
	f.Add("label", labelNode)
	list, err := l.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list the containers of lab %s: %w", l.spec.Name, err)
	}
	var nodes []running
	for _, c := range list {
		n, ok := l.spec.nodeByName(c.Labels[labelNode])
		if !ok || c.Labels[labelLab] != l.spec.Name {
			continue
		}
		r := running{node: n, id: c.ID, state: c.State, image: c.ImageID}
		if c.NetworkSettings != nil {
			if ep := c.NetworkSettings.Networks[l.spec.Network()]; ep != nil {
				r.address = ep.IPAddress
			}
		}
		nodes = append(nodes, r)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].node.Index < nodes[j].node.Index })
	return nodes, nil
}

// labels are the labels of every object of the lab; node adds the node name.
func (s labSpec) labels(n *node) map[string]string {
	m := map[string]string{labelLab: s.Name}
	if n != nil {
		m[labelNode] = n.Name
	}
	return m
}

// ensureNetwork creates the lab network unless it exists with the lab's subnet. A new
// network's subnet must overlap no other network of the engine and no address of
// this machine: two labs never share addresses (subnetInUseError).
func (l *lab) ensureNetwork(ctx context.Context) error {
	name, subnet := l.spec.Network(), l.spec.Subnet.String()
	nw, err := l.cli.NetworkInspect(ctx, name, network.InspectOptions{})
	if err == nil && nw.Name == name { // the engine also matches ID prefixes
		if nw.Labels[labelLab] != l.spec.Name {
			return fmt.Errorf("network %s exists but is not lab %s's (no label %s=%s): remove it, or choose another --name", name, l.spec.Name, labelLab, l.spec.Name)
		}
		for _, c := range nw.IPAM.Config {
			if c.Subnet == subnet {
				return nil
			}
		}
		return fmt.Errorf("network %s exists without subnet %s (made by an older lab?): run `%s`, then `%s`", name, subnet, l.spec.command("down"), l.spec.command("up"))
	}
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect network %s: %w", name, err)
	}
	if err := l.checkSubnetFree(ctx); err != nil {
		return err
	}
	lbl := l.spec.labels(nil)
	lbl[labelState] = l.paths.Dir
	_, err = l.cli.NetworkCreate(ctx, name, network.CreateOptions{
		Driver: "bridge",
		IPAM: &network.IPAM{Config: []network.IPAMConfig{{
			Subnet: subnet, IPRange: l.spec.IPRange().String(), Gateway: l.spec.Gateway().String(),
		}}},
		Options: map[string]string{"com.docker.network.bridge.name": l.spec.Bridge},
		Labels:  lbl,
	})
	if err != nil {
		if strings.Contains(err.Error(), "overlaps") { // a network made meanwhile
			return subnetInUseError{spec: l.spec, other: err.Error()}
		}
		return fmt.Errorf("create network %s (%s): %w", name, subnet, err)
	}
	fmt.Fprintf(l.out, "network %s: created (%s, bridge %s)\n", name, subnet, l.spec.Bridge)
	return nil
}

// subnetInUseError is a lab whose subnet overlaps another network. `lab` exits
// with exitSubnetInUse for it.
type subnetInUseError struct {
	spec  labSpec
	other string // what it overlaps
}

func (e subnetInUseError) Error() string {
	return fmt.Sprintf("lab %s: its subnet %s (derived from the name) overlaps %s; nothing was created: choose another --name",
		e.spec.Name, e.spec.Subnet, e.other)
}

// checkSubnetFree fails with subnetInUseError when the lab's subnet overlaps a
// subnet of another network of the engine, or an address of this machine's
// interfaces (a LAN or VPN that the lab would hide).
func (l *lab) checkSubnetFree(ctx context.Context) error {
	nets, err := l.cli.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return fmt.Errorf("list networks: %w", err)
	}
	for _, nw := range nets {
		for _, c := range nw.IPAM.Config {
			p, err := netip.ParsePrefix(c.Subnet)
			if err == nil && p.Overlaps(l.spec.Subnet) {
				what := "network " + nw.Name + " (" + c.Subnet + ")"
				if other := nw.Labels[labelLab]; other != "" {
					what = "lab " + other + "'s network (" + c.Subnet + ")"
				}
				return subnetInUseError{spec: l.spec, other: what}
			}
		}
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil // no view of the interfaces: the engine's check above stands
	}
	for _, ifc := range ifaces {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			ones, _ := ipn.Mask.Size()
			if !ok || !ip.Unmap().Is4() {
				continue
			}
			if p := netip.PrefixFrom(ip.Unmap(), ones).Masked(); p.Overlaps(l.spec.Subnet) {
				return subnetInUseError{spec: l.spec, other: fmt.Sprintf("address %s of interface %s on this machine", a, ifc.Name)}
			}
		}
	}
	return nil
}

// registryHosts map Docker Hub's names to the node's loopback (see containerConfig).
var registryHosts = []string{
	"registry-1.docker.io:127.0.0.1", "index.docker.io:127.0.0.1", "auth.docker.io:127.0.0.1",
	"docker.io:127.0.0.1", "production.cloudflare.docker.com:127.0.0.1",
}

// containerConfig is how a node container is made: its own address and host name, and
// what it needs to run its own Docker engine later (see LAB.md: all capabilities but
// SYS_RESOURCE, no seccomp or AppArmor profile, the host's cgroup tree, a tmpfs /run and
// a volume for /var/lib/docker, since overlay2 does not stack on overlay), and no DNS
// beyond the lab's own names.
func (s labSpec) containerConfig(n node, imageRef string) (*container.Config, *container.HostConfig, *network.NetworkingConfig) {
	stop := 30
	useInit := true // tini as PID 1 reaps what the node's daemons orphan
	cfg := &container.Config{
		Hostname:    n.Name,
		Image:       imageRef,
		Labels:      s.labels(&n),
		StopTimeout: &stop,
	}
	host := &container.HostConfig{
		Init:         &useInit,
		CapAdd:       []string{"ALL"},
		CapDrop:      []string{"SYS_RESOURCE"},
		SecurityOpt:  []string{"seccomp=unconfined", "apparmor=unconfined"},
		Tmpfs:        map[string]string{"/run": "rw,nosuid,nodev,exec,mode=0755"},
		Binds:        []string{"/sys/fs/cgroup:/sys/fs/cgroup:rw"},
		CgroupnsMode: container.CgroupnsModeHost,
		// The engine's embedded DNS (127.0.0.11) answers the lab's names and forwards
		// any other name to these servers, from the node: 127.0.0.1, where nothing
		// listens, so a lookup of an outside name (a node's engine looking for a
		// registry) fails (after the resolver's timeout) and sends nothing off this
		// machine.
		DNS: []string{"127.0.0.1"},
		// The lab has no registry: the registry names point at the node itself, so
		// the pull a swarm task attempts before it starts (the image is there
		// already) is refused at once instead of waiting out the DNS timeout.
		ExtraHosts: registryHosts,
		Mounts: []mount.Mount{{
			Type: mount.TypeVolume, Source: n.Volume(), Target: "/var/lib/docker",
		}},
	}
	nw := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
		s.Network(): {
			IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: n.Address.String()},
			Aliases:    []string{n.Name},
		},
	}}
	return cfg, host, nw
}

// ensureNode creates and starts the node's container (and volume) where missing, starts
// it when stopped, and leaves a running one alone.
func (l *lab) ensureNode(ctx context.Context, n node, imageRef, imageID string, have *running) error {
	if have != nil {
		if have.image != imageID {
			fmt.Fprintf(l.out, "node %s: runs an older image than %s; `lab down` then `lab up` recreates it\n", n.Name, imageRef)
		}
		if have.state == "running" {
			if have.address != n.Address.String() {
				return fmt.Errorf("node %s runs with address %q on %s, not %s: `%s`, then `%s`", n.Name, have.address, l.spec.Network(), n.Address, l.spec.command("down"), l.spec.command("up"))
			}
			return nil
		}
		if err := l.cli.ContainerStart(ctx, have.id, container.StartOptions{}); err != nil {
			return fmt.Errorf("start node %s: %w", n.Name, err)
		}
		fmt.Fprintf(l.out, "node %s: started (was %s)\n", n.Name, have.state)
		return nil
	}
	if _, err := l.cli.VolumeCreate(ctx, volume.CreateOptions{Name: n.Volume(), Labels: l.spec.labels(&n)}); err != nil {
		return fmt.Errorf("create volume %s: %w", n.Volume(), err)
	}
	cfg, host, nw := l.spec.containerConfig(n, imageRef)
	created, err := l.cli.ContainerCreate(ctx, cfg, host, nw, nil, n.Container())
	if err != nil {
		return fmt.Errorf("create node %s: %w", n.Name, err)
	}
	if err := l.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("start node %s: %w", n.Name, err)
	}
	fmt.Fprintf(l.out, "node %s: created %s at %s\n", n.Name, n.Container(), n.Address)
	return nil
}

// provision waits until the node's init has started sshd, installs the lab key into
// root's authorized_keys (appending; other keys stay), points apt at the lab
// repository only (replacing debian.sources and any sources.list) and reads the
// node's host key out of band, through the engine rather than over the network.
func (l *lab) provision(ctx context.Context, n node, signer ssh.Signer) (ssh.PublicKey, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := execIn(ctx, l.cli, n.Container(), nil, "test", "-e", "/run/clusterflow/ready")
		if err == nil && res.ExitCode == 0 {
			break
		}
		if time.Now().After(deadline) {
			logs := l.containerLogTail(ctx, n.Container())
			return nil, fmt.Errorf("node %s: sshd not started after 60s (%v); container log:\n%s", n.Name, err, logs)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	const install = `set -eu
umask 077
mkdir -p /root/.ssh
touch /root/.ssh/authorized_keys
grep -qxF "$1" /root/.ssh/authorized_keys || printf '%s\n' "$1" >>/root/.ssh/authorized_keys
chmod 700 /root/.ssh
chmod 600 /root/.ssh/authorized_keys
chown root:root /root/.ssh /root/.ssh/authorized_keys
# apt: the lab repository only, never Debian's mirror (lab/README.md).
umask 022
printf '%s' "$2" >/etc/apt/sources.list.d/debian.sources.tmp
mv /etc/apt/sources.list.d/debian.sources.tmp /etc/apt/sources.list.d/debian.sources
rm -f /etc/apt/sources.list`
	if _, err := execOK(ctx, l.cli, n.Container(), "sh", "-c", install, "sh", authorizedKeyLine(signer), l.spec.nodeAptSources()); err != nil {
		return nil, fmt.Errorf("node %s: install lab key and apt sources: %w", n.Name, err)
	}
	out, err := execOK(ctx, l.cli, n.Container(), "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
	if err != nil {
		return nil, fmt.Errorf("node %s: read host key: %w", n.Name, err)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(out))
	if err != nil {
		return nil, fmt.Errorf("node %s: host key %q: %w", n.Name, strings.TrimSpace(out), err)
	}
	return key, nil
}

// containerLogTail returns the last lines a container printed, for error messages.
func (l *lab) containerLogTail(ctx context.Context, name string) string {
	rc, err := l.cli.ContainerLogs(ctx, name, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "20"})
	if err != nil {
		return err.Error()
	}
	defer rc.Close()
	var b strings.Builder
	_, _ = stdcopy.StdCopy(&b, &b, rc)
	return b.String()
}

// up brings the lab up: images, network, node containers, key, known_hosts, inventory,
// then an SSH login to each node with strict host key checking. Idempotent.
func up(ctx context.Context, l *lab, opts upOptions) error {
	start := time.Now()
	want, err := l.spec.nodes(opts.Nodes)
	if err != nil {
		return err
	}
	spec, imageRef := nodeImageSpec, nodeImage
	if opts.Prebaked {
		spec, imageRef = prebakedImageSpec, prebakedImage
	}
	verbose := io.Discard
	if opts.Verbose {
		verbose = l.out
	}
	b := &imageBuilder{cli: l.cli, out: l.out, verbose: verbose}
	if err := b.ensure(ctx, spec); err != nil {
		return err
	}
	img, err := l.cli.ImageInspect(ctx, imageRef)
	if err != nil {
		return fmt.Errorf("inspect image %s: %w", imageRef, err)
	}
	// The package cache of the lab repository is made at installation time (`lab repo`);
	// with CLUSTERFLOW_LAB_NO_FETCH=1 (the tests) a missing one is an error.
	repoDir, repoServer, err := ensureRepo(ctx, l.cli, l.out, os.Getenv(envNoFetch) != "1")
	if err != nil {
		return err
	}
	imagesDone := time.Now()

	if err := l.ensureNetwork(ctx); err != nil {
		return err
	}
	if err := l.ensureRepoContainer(ctx, repoDir, repoServer); err != nil {
		return err
	}
	existing, err := l.listNodes(ctx)
	if err != nil {
		return err
	}
	have := map[string]*running{}
	for i := range existing {
		have[existing[i].node.Name] = &existing[i]
	}
	for _, n := range want {
		if err := l.ensureNode(ctx, n, imageRef, img.ID, have[n.Name]); err != nil {
			return err
		}
	}
	// Nodes beyond --nodes that an earlier `lab up` made stay and stay in the inventory:
	// `lab up` never removes a node.
	nodes := append([]node(nil), want...)
	for _, r := range existing {
		if r.node.Index >= len(want) {
			if r.state != "running" {
				if err := l.ensureNode(ctx, r.node, imageRef, img.ID, &r); err != nil {
					return err
				}
			}
			fmt.Fprintf(l.out, "node %s: kept (beyond --nodes %d; `lab down` removes all nodes)\n", r.node.Name, opts.Nodes)
			nodes = append(nodes, r.node)
		}
	}
	containersDone := time.Now()

	signer, created, err := ensureKeyPair(l.paths)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(l.out, "lab key: created %s\n", l.paths.Key)
	}
	hostKeys := make([]ssh.PublicKey, len(nodes))
	if err := forEach(ctx, nodes, func(ctx context.Context, i int, n node) (err error) {
		hostKeys[i], err = l.provision(ctx, n, signer)
		return err
	}); err != nil {
		return err
	}
	lines := make([]string, len(nodes))
	for i, n := range nodes {
		lines[i] = knownHostsLine(n.Address.String(), sshPort, hostKeys[i])
	}
	if err := writeFileAtomic(l.paths.KnownHosts, renderKnownHosts(lines), 0o644); err != nil {
		return fmt.Errorf("write known_hosts: %w", err)
	}
	if err := writeFileAtomic(l.paths.Inventory, renderInventory(nodes), 0o644); err != nil {
		return fmt.Errorf("write inventory: %w", err)
	}
	consul, err := installConsul(l.paths)
	if err != nil {
		return err
	}

	sshStart := time.Now()
	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := forEach(waitCtx, nodes, func(ctx context.Context, _ int, n node) error {
		return waitSSH(ctx, l.paths, signer, n)
	}); err != nil {
		return err
	}
	sshDone := time.Now()

	fmt.Fprintf(l.out, "\nlab up: lab %s, %d nodes accept SSH (strict host keys) after %s (images %s, containers %s, keys %s, ssh %s)\n",
		l.spec.Name, len(nodes), sshDone.Sub(start).Round(100*time.Millisecond),
		imagesDone.Sub(start).Round(100*time.Millisecond),
		containersDone.Sub(imagesDone).Round(100*time.Millisecond),
		sshStart.Sub(containersDone).Round(100*time.Millisecond),
		sshDone.Sub(sshStart).Round(100*time.Millisecond))
	tw := tabwriter.NewWriter(l.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tADDRESS\tGROUPS\tCONTAINER")
	for _, n := range nodes {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", n.Name, n.Address, strings.Join(n.Groups(), ","), n.Container())
	}
	tw.Flush()
	fmt.Fprintf(l.out, "network:     %s (%s, bridge %s)\ninventory:   %s\nknown_hosts: %s\nkey:         %s\nimage:       %s\napt:         %s (%s, the nodes' only package source)\n",
		l.spec.Network(), l.spec.Subnet, l.spec.Bridge, l.paths.Inventory, l.paths.KnownHosts, l.paths.Key, imageRef, l.spec.repoURL(), l.spec.RepoContainer())
	if consul != "" {
		fmt.Fprintf(l.out, "consul:      %s (%s, sums in %s)\n", consul, consulVersion, consulSums)
	}
	fmt.Fprintf(l.out, "try:         %s %s -- hostname\n", l.spec.command("ssh"), nodes[0].Name)
	return nil
}

// forEach runs fn for every node at once and returns the first error (all of them, if
// several failed), after every call returned.
func forEach(ctx context.Context, nodes []node, fn func(ctx context.Context, i int, n node) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(ctx, i, n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// down removes every container, volume and network that carries the lab label with
// this lab's name, and the lab's known_hosts and inventory (the key pair stays).
// Other labs stay as they are. Idempotent.
func down(ctx context.Context, l *lab) error {
	list, err := l.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: labFilter(l.spec.Name)})
	if err != nil {
		return fmt.Errorf("list lab containers: %w", err)
	}
	if err := forEachContainer(list, func(c container.Summary) error {
		name := strings.TrimPrefix(firstOr(c.Names, c.ID), "/")
		// A graceful stop lets a node's own engine shut down; the removal follows.
		timeout := 20
		if err := l.cli.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: &timeout}); err != nil && !cerrdefs.IsNotFound(err) {
			fmt.Fprintf(l.out, "container %s: stop: %v (removing anyway)\n", name, err)
		}
		err := l.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove container %s: %w", name, err)
		}
		fmt.Fprintf(l.out, "container %s: removed\n", name)
		return nil
	}); err != nil {
		return err
	}
	vols, err := l.cli.VolumeList(ctx, volume.ListOptions{Filters: labFilter(l.spec.Name)})
	if err != nil {
		return fmt.Errorf("list lab volumes: %w", err)
	}
	for _, v := range vols.Volumes {
		if err := l.cli.VolumeRemove(ctx, v.Name, true); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove volume %s: %w", v.Name, err)
		}
		fmt.Fprintf(l.out, "volume %s: removed\n", v.Name)
	}
	nets, err := l.cli.NetworkList(ctx, network.ListOptions{Filters: labFilter(l.spec.Name)})
	if err != nil {
		return fmt.Errorf("list lab networks: %w", err)
	}
	for _, nw := range nets {
		if err := l.cli.NetworkRemove(ctx, nw.ID); err != nil && !cerrdefs.IsNotFound(err) {
			users := l.networkUsers(ctx, nw.ID)
			return fmt.Errorf("remove network %s: %w (still attached: %s; stop them first, e.g. docker-compose down)", nw.Name, err, users)
		}
		fmt.Fprintf(l.out, "network %s: removed\n", nw.Name)
	}
	for _, f := range []string{l.paths.KnownHosts, l.paths.Inventory} {
		if err := os.Remove(f); err == nil {
			fmt.Fprintf(l.out, "file %s: removed\n", f)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	fmt.Fprintf(l.out, "lab down: nothing of lab %s is left (key pair kept in %s)\n", l.spec.Name, l.paths.Dir)
	return nil
}

// forEachContainer runs fn for all containers at once and joins the errors.
func forEachContainer(list []container.Summary, fn func(container.Summary) error) error {
	errs := make([]error, len(list))
	var wg sync.WaitGroup
	for i, c := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(c)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// networkUsers names the containers attached to a network, for error messages.
func (l *lab) networkUsers(ctx context.Context, id string) string {
	nw, err := l.cli.NetworkInspect(ctx, id, network.InspectOptions{})
	if err != nil {
		return "unknown"
	}
	var names []string
	for _, ep := range nw.Containers {
		names = append(names, ep.Name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}

// nodeStatus is one row of `lab status`.
type nodeStatus struct {
	Node, State, Address, SSH, Docker string
}

// status reports every lab node: container state, address, whether sshd accepts the
// lab key with strict host key checking, and whether a Docker engine is installed or
// running in the node.
func status(ctx context.Context, l *lab) ([]nodeStatus, error) {
	nodes, err := l.listNodes(ctx)
	if err != nil {
		return nil, err
	}
	var signer ssh.Signer
	if data, err := os.ReadFile(l.paths.Key); err == nil {
		signer, _ = ssh.ParsePrivateKey(data)
	}
	rows := make([]nodeStatus, len(nodes))
	var wg sync.WaitGroup
	for i, r := range nodes {
		rows[i] = nodeStatus{Node: r.node.Name, State: r.state, Address: r.address, SSH: "-", Docker: "-"}
		if r.state != "running" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows[i].SSH = l.probeSSH(ctx, signer, r)
			rows[i].Docker = l.probeDocker(ctx, r.node)
		}()
	}
	wg.Wait()
	return rows, nil
}

// probeSSH tries one strict login; it says why not when it fails.
func (l *lab) probeSSH(ctx context.Context, signer ssh.Signer, r running) string {
	if signer == nil {
		return "no lab key (run lab up)"
	}
	if _, err := netip.ParseAddr(r.address); err != nil {
		return "no address"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := sshLogin(ctx, l.paths, signer, r.address)
	if err != nil {
		return "no: " + shorten(err.Error(), 60)
	}
	defer c.Close()
	if _, err := sshRun(c, "true"); err != nil {
		return "no: " + shorten(err.Error(), 60)
	}
	return "yes"
}

// probeDocker says whether the node has a Docker engine: absent, installed or running.
func (l *lab) probeDocker(ctx context.Context, n node) string {
	const probe = `if ! command -v dockerd >/dev/null 2>&1; then echo absent
elif v=$(timeout 5 docker version --format '{{.Server.Version}}' 2>/dev/null); then echo "running $v"
else echo installed; fi`
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := execOK(ctx, l.cli, n.Container(), "sh", "-c", probe)
	if err != nil {
		return "unknown: " + shorten(err.Error(), 40)
	}
	return strings.TrimSpace(out)
}

func shorten(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

// printStatus writes the status table, under a line that names the lab.
func printStatus(w io.Writer, l *lab, rows []nodeStatus) {
	if len(rows) == 0 {
		fmt.Fprintf(w, "lab %s has no nodes (run: %s)\n", l.spec.Name, l.spec.command("up"))
		return
	}
	fmt.Fprintf(w, "lab %s: network %s (%s), state %s\n", l.spec.Name, l.spec.Network(), l.spec.Subnet, l.paths.Dir)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCONTAINER\tADDRESS\tSSH\tDOCKER")
	for _, r := range rows {
		addr := r.Address
		if addr == "" {
			addr = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Node, r.State, addr, r.SSH, r.Docker)
	}
	tw.Flush()
}
