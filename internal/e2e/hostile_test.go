//go:build integration

package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
	"github.com/clusterflow/clusterflow/workflows"
)

// hostileCase is one workflow input from someone who may start workflows but
// should not command the worker: it must be refused, with want in the run's
// failure, and change nothing.
type hostileCase struct {
	name  string
	input any    // RunPlaybookInput as the Web UI's JSON would carry it
	want  string // in the run's history (its failure, or the failing activity's)
}

// direct is an input for a procedure workflow started directly, not through
// RunPlaybook: the procedures are registered on the same task queue, so anyone
// may start one.
type direct struct {
	typ   string
	input any
}

// TestHostileInputs starts a worker with a narrow file policy (it may read its
// playbook directory and write one "allowed" directory, nothing else of the
// machine) and sends it seventy-three hostile inputs: plans sent as JSON that try
// each consequence of the hostile-input review (any worker file uploaded to a
// host, addresses that are not addresses reaching the host-key pinning, pins
// into chosen files, keys and binaries from anywhere), inline playbooks that
// name worker files outside the policy, and malformed inputs. Each must fail
// with its refusal; afterwards no file outside the allowed directories was
// created or changed, nothing reached the host's side, and no planted secret
// appears in any history or in the worker's or server's log. A plain plan
// runs first, as a control that the setup works.
func TestHostileInputs(t *testing.T) {
	c := newCluster(t, 1)
	root := c.dir
	dirs := map[string]string{}
	for _, d := range []string{"playbooks", "allowed", "outside/root-ssh", "outside/pkgs", "host", "wstate"} {
		dirs[d] = filepath.Join(root, d)
		if err := os.MkdirAll(dirs[d], 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// (The server's state is in root/state; the worker's is wstate, where its
	// database would be: a planted one there is denied to playbooks.)
	pb, allowed, outside, host, state := dirs["playbooks"], dirs["allowed"], filepath.Join(root, "outside"), dirs["host"], dirs["wstate"]

	// Planted secrets: worker files that no input may read, quote or copy.
	marker := make([]byte, 8)
	if _, err := rand.Read(marker); err != nil {
		t.Fatal(err)
	}
	planted := "PLANTED-" + hex.EncodeToString(marker)
	write := func(p, text string, mode os.FileMode) string {
		t.Helper()
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret := write(filepath.Join(outside, "secret.txt"), planted+"-secret\n", 0o600)
	sums := write(filepath.Join(outside, "SHA256SUMS"), planted+"-sums first line\n", 0o600)
	idPlanted := write(filepath.Join(outside, "id_planted"), planted+"-identity\n", 0o600)
	clusterKey := write(filepath.Join(outside, "cluster_key"), planted+"-cluster-key\n", 0o600)
	write(filepath.Join(outside, "pkgs", "docker.io_1_amd64.deb"), planted+"-deb\n", 0o600)
	write(filepath.Join(outside, "inventory.yaml"), planted+"-inventory: {}\n", 0o600)
	write(filepath.Join(outside, "x.yaml"), planted+"-playbook\n", 0o600)
	db := write(filepath.Join(state, "temporal.db"), planted+"-database\n", 0o600)
	// What the allowed side holds: the SSH client key and known_hosts the control
	// run uses, a file to upload, and links that lead out.
	key := write(filepath.Join(allowed, "id"), readFile(t, c.ssh.ClientKey), 0o600)
	kh := write(filepath.Join(allowed, "known_hosts"), readFile(t, c.ssh.KnownHosts), 0o600)
	motd := write(filepath.Join(pb, "motd"), "hello\n", 0o644)
	write(filepath.Join(pb, "range.tmpl"), "{{range 100000000000}}{{end}}\n", 0o644)
	for link, target := range map[string]string{filepath.Join(pb, "link-out"): secret, filepath.Join(pb, "link.yaml"): filepath.Join(outside, "x.yaml")} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}

	worker := c.startEnv("worker", []string{"CLUSTERFLOW_LOG_LEVEL=info", "CLUSTERFLOW_ALLOW_PATHS=" + allowed, "CLUSTERFLOW_ALLOW_READ="},
		"worker", "--address", c.addr, "--state-dir", state, "--playbook-dir", pb)

	h := c.ssh.Hosts[0]
	base := func(name string) playbooks.Plan {
		return playbooks.Plan{Name: "hostile", Source: "hostile.yaml",
			Hosts: []playbooks.Host{{Name: "h1", Address: h.Addr, Port: h.Port, User: "root", IdentityFile: key, KnownHostsFile: kh, HostKeyPolicy: playbooks.HostKeyStrict}},
			Steps: []playbooks.Step{{Name: "upload", Kind: playbooks.KindUpload, Hosts: []string{"h1"}, Parallel: 1,
				Timeout: playbooks.Duration(30 * time.Second), Attempts: 1,
				Upload: &playbooks.UploadStep{Src: motd, Dest: filepath.Join(host, name), Mode: 0o644}}}}
	}
	asJSON := func(v any) any { // what the Web UI sends: JSON, decoded by the worker
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var out any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	plan := func(name string, edit func(p *playbooks.Plan)) any {
		p := base(name)
		edit(&p)
		return asJSON(map[string]any{"plan": p})
	}
	step := func(kind string, set func(s *playbooks.Step)) func(p *playbooks.Plan) {
		return func(p *playbooks.Plan) {
			// A procedure kind takes the defaults of the fields it does not use.
			p.Steps[0].Kind, p.Steps[0].Upload = kind, nil
			p.Steps[0].Timeout, p.Steps[0].Attempts = playbooks.Duration(10*time.Minute), 3
			set(&p.Steps[0])
		}
	}
	hostEdit := func(set func(h *playbooks.Host)) func(p *playbooks.Plan) {
		return func(p *playbooks.Plan) { set(&p.Hosts[0]) }
	}
	inline := func(inventory, stepYAML string) any {
		if inventory == "" {
			inventory = fmt.Sprintf("    defaults: {user: root, port: %d, identityFile: %s, knownHostsFile: %s}\n    hosts:\n      - {name: h1, address: %s}\n", h.Port, key, kh, h.Addr)
		}
		return map[string]any{"inline": "apiVersion: clusterflow.io/v1\nkind: Playbook\nmetadata: {name: hostile}\nspec:\n  inventory:\n" +
			inventory + "  steps:\n    - name: s\n      hosts: all\n" + stepYAML}
	}
	const (
		outsideRead  = "outside what this worker lets playbooks read"
		outsideSSH   = "outside what this worker lets playbooks read SSH keys"
		outsideWrite = "outside what this worker lets playbooks write"
		notAddress   = "address"
	)

	// The control: the same plan, unchanged, runs and uploads.
	control := c.runWorkflow(t, "hostile/control", "", asJSON(map[string]any{"plan": base("control")}))
	if control != nil {
		t.Fatalf("the control plan failed: %v\n%s", control, c.logOf(worker))
	}
	if _, err := os.Stat(filepath.Join(host, "control")); err != nil {
		t.Fatalf("the control plan uploaded nothing: %v", err)
	}

	cases := []hostileCase{
		// Finding 1: a plan sent as JSON, each consequence.
		{"plan: upload src is a worker secret", plan("c1", func(p *playbooks.Plan) { p.Steps[0].Upload.Src = secret }), outsideRead},
		{"plan: upload src /etc/shadow", plan("c2", func(p *playbooks.Plan) { p.Steps[0].Upload.Src = "/etc/shadow" }), outsideRead},
		{"plan: upload src the worker's database", plan("c3", func(p *playbooks.Plan) { p.Steps[0].Upload.Src = db }), outsideRead},
		{"plan: upload src with ..", plan("c4", func(p *playbooks.Plan) { p.Steps[0].Upload.Src = pb + "/../outside/secret.txt" }), "clean"},
		{"plan: upload src a link out of the playbook dir", plan("c5", func(p *playbooks.Plan) { p.Steps[0].Upload.Src = filepath.Join(pb, "link-out") }), outsideRead},
		{"plan: upload src relative", plan("c6", func(p *playbooks.Plan) { p.Steps[0].Upload.Src = "motd" }), "absolute"},
		{"plan: upload src the worker's SSH key", plan("c7", func(p *playbooks.Plan) { p.Steps[0].Upload.Src = "/root/.ssh/id_ed25519" }), outsideRead},
		{"plan: upload dest relative", plan("c8", func(p *playbooks.Plan) { p.Steps[0].Upload.Dest = "etc/motd" }), "absolute"},
		{"plan: address with a newline and a CA line", plan("c9", hostEdit(func(x *playbooks.Host) {
			x.Address = h.Addr + "\n@cert-authority * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"
		})), notAddress},
		{"plan: address *", plan("c10", hostEdit(func(x *playbooks.Host) { x.Address = "*" })), notAddress},
		{"plan: address 127.0.0.*", plan("c11", hostEdit(func(x *playbooks.Host) { x.Address = "127.0.0.*" })), notAddress},
		{"plan: address !negation", plan("c12", hostEdit(func(x *playbooks.Host) { x.Address = "!" + h.Addr })), notAddress},
		{"plan: address with a comma", plan("c13", hostEdit(func(x *playbooks.Host) { x.Address = h.Addr + ",other" })), notAddress},
		{"plan: address [host]:port", plan("c14", hostEdit(func(x *playbooks.Host) { x.Address = "[" + h.Addr + "]:22" })), notAddress},
		{"plan: address with a zone", plan("c15", hostEdit(func(x *playbooks.Host) { x.Address = "fe80::1%lo" })), notAddress},
		{"plan: address empty", plan("c16", hostEdit(func(x *playbooks.Host) { x.Address = "" })), notAddress},
		{"plan: tofu pin into root's authorized_keys2", plan("c17", hostEdit(func(x *playbooks.Host) {
			x.KnownHostsFile, x.HostKeyPolicy = filepath.Join(outside, "root-ssh", "authorized_keys2"), playbooks.HostKeyTOFU
		})), outsideSSH},
		{"plan: tofu pin into a new directory", plan("c18", hostEdit(func(x *playbooks.Host) {
			x.KnownHostsFile, x.HostKeyPolicy = filepath.Join(outside, "new", "known_hosts"), playbooks.HostKeyTOFU
		})), outsideSSH},
		{"plan: knownHostsFile relative", plan("c19", hostEdit(func(x *playbooks.Host) { x.KnownHostsFile = "known_hosts" })), "knownHostsFile"},
		{"plan: knownHostsFile with ..", plan("c20", hostEdit(func(x *playbooks.Host) { x.KnownHostsFile = allowed + "/../outside/kh" })), "knownHostsFile"},
		{"plan: knownHostsFile with a newline", plan("c21", hostEdit(func(x *playbooks.Host) { x.KnownHostsFile = kh + "\nx" })), "knownHostsFile"},
		{"plan: identityFile a planted file", plan("c22", hostEdit(func(x *playbooks.Host) { x.IdentityFile = idPlanted })), outsideSSH},
		{"plan: identityFile the worker's database", plan("c23", hostEdit(func(x *playbooks.Host) { x.IdentityFile = db })), outsideSSH},
		{"plan: no credentials", plan("c24", hostEdit(func(x *playbooks.Host) { x.IdentityFile = "" })), "identityFile: is required"},
		{"plan: hostKeyPolicy off", plan("c25", hostEdit(func(x *playbooks.Host) { x.HostKeyPolicy = "off" })), "hostKeyPolicy"},
		{"plan: hostKeyPolicy empty", plan("c26", hostEdit(func(x *playbooks.Host) { x.HostKeyPolicy = "" })), "hostKeyPolicy"},
		{"plan: user with an option", plan("c27", hostEdit(func(x *playbooks.Host) { x.User = "root -oProxyCommand=sh" })), "user: must be a user name"},
		{"plan: user empty", plan("c28", hostEdit(func(x *playbooks.Host) { x.User = "" })), "user: must be a user name"},
		{"plan: port 0", plan("c29", hostEdit(func(x *playbooks.Host) { x.Port = 0 })), "port: must be between 1 and 65535"},
		{"plan: port 65536", plan("c30", hostEdit(func(x *playbooks.Host) { x.Port = 65536 })), "port: must be between 1 and 65535"},
		{"plan: host named all", plan("c31", func(p *playbooks.Plan) { p.Hosts[0].Name, p.Steps[0].Hosts = "all", []string{"all"} }), "plan.hosts[0]: name"},
		{"plan: host name with a newline", plan("c32", func(p *playbooks.Plan) { p.Hosts[0].Name, p.Steps[0].Hosts = "h1\nx", []string{"h1\nx"} }), "plan.hosts[0]: name"},
		{"plan: duplicate hosts", plan("c33", func(p *playbooks.Plan) { p.Hosts = append(p.Hosts, p.Hosts[0]) }), "duplicate host name"},
		{"plan: jump through itself", plan("c34", hostEdit(func(x *playbooks.Host) { x.Jump = "h1" })), "jump through itself"},
		{"plan: jump to an unknown host", plan("c35", hostEdit(func(x *playbooks.Host) { x.Jump = "bastion" })), "not in the inventory"},
		{"plan: name with ..", plan("c36", func(p *playbooks.Plan) { p.Name = "../x" }), "plan.name"},
		{"plan: cluster with a space", plan("c37", func(p *playbooks.Plan) { p.Cluster = "a b" }), "plan.cluster"},
		{"plan: source with a newline", plan("c38", func(p *playbooks.Plan) { p.Source = "x\nFAKE LOG LINE" }), "plan.source"},
		{"plan: variable name with a dash", plan("c39", func(p *playbooks.Plan) { p.Vars = map[string]string{"a-b": "x"} }), "plan.vars"},
		{"plan: no steps", plan("c40", func(p *playbooks.Plan) { p.Steps = nil }), "no steps"},
		{"plan: unknown step kind", plan("c41", func(p *playbooks.Plan) { p.Steps[0].Kind = "shell" }), "unknown step kind"},
		{"plan: step host not in the inventory", plan("c42", func(p *playbooks.Plan) { p.Steps[0].Hosts = []string{"nobody"} }), "not in the inventory"},
		{"plan: parallel 0", plan("c43", func(p *playbooks.Plan) { p.Steps[0].Parallel = 0 }), "parallel"},
		{"plan: timeout 0", plan("c44", func(p *playbooks.Plan) { p.Steps[0].Timeout = 0 }), "timeout"},
		{"plan: consul binary a worker secret", plan("c45", step(playbooks.KindConsulBootstrap, func(s *playbooks.Step) {
			s.Consul = &playbooks.ConsulStep{Source: playbooks.ConsulFromFile, Binary: secret, SHA256: strings.Repeat("0", 64), GossipKeyFile: filepath.Join(allowed, "gossip.key")}
		})), outsideRead},
		{"plan: gossip key made outside", plan("c46", step(playbooks.KindConsulBootstrap, func(s *playbooks.Step) {
			s.Consul = &playbooks.ConsulStep{Source: playbooks.ConsulFromFile, Binary: motd, SHA256: strings.Repeat("0", 64), GossipKeyFile: filepath.Join(outside, "new", "gossip.key")}
		})), outsideWrite},
		{"plan: cluster key rotated outside", plan("c47", step(playbooks.KindDistributeKeys, func(s *playbooks.Step) {
			s.DistributeKeys = &playbooks.DistributeKeysStep{ClusterKey: clusterKey, Rotate: true}
		})), outsideWrite},
		{"plan: cluster key is the worker's own SSH key", plan("c48", step(playbooks.KindDistributeKeys, func(s *playbooks.Step) {
			s.DistributeKeys = &playbooks.DistributeKeysStep{ClusterKey: "/root/.ssh/id_ed25519", Rotate: true}
		})), outsideWrite},

		// Finding 2: inline playbooks that name worker files outside the policy.
		{"inline: sha256sums a worker file", inline("", "      kind: consulBootstrap\n      binary: "+motd+"\n      sha256sums: "+sums+"\n      gossipKeyFile: "+filepath.Join(allowed, "g.key")+"\n"), outsideRead},
		{"inline: consul binary /etc/passwd", inline("", "      kind: consulBootstrap\n      binary: /etc/passwd\n      sha256: "+strings.Repeat("a", 64)+"\n      gossipKeyFile: "+filepath.Join(allowed, "g.key")+"\n"), outsideRead},
		{"inline: gossip key made outside", inline("", "      kind: consulBootstrap\n      binary: "+motd+"\n      sha256: "+strings.Repeat("a", 64)+"\n      gossipKeyFile: "+filepath.Join(outside, "g", "gossip.key")+"\n"), outsideWrite},
		{"inline: cluster key rotated outside", inline("", "      kind: distributeKeys\n      clusterKey: "+clusterKey+"\n      rotate: true\n"), outsideWrite},
		{"inline: tofu known_hosts outside", inline(fmt.Sprintf("    defaults: {user: root, port: %d, identityFile: %s, knownHostsFile: %s}\n    hosts:\n      - {name: h1, address: %s}\n", h.Port, key, filepath.Join(outside, "kh", "known_hosts"), h.Addr),
			"      kind: run\n      command: [touch, "+filepath.Join(host, "inline-kh")+"]\n"), outsideSSH},
		{"inline: identityFile a planted file", inline(fmt.Sprintf("    defaults: {user: root, port: %d, identityFile: %s, knownHostsFile: %s}\n    hosts:\n      - {name: h1, address: %s}\n", h.Port, idPlanted, kh, h.Addr),
			"      kind: run\n      command: [touch, "+filepath.Join(host, "inline-id")+"]\n"), outsideSSH},
		{"inline: caKey and caCert outside", inline("", "      kind: rotateCA\n      caCert: "+secret+"\n      caKey: "+idPlanted+"\n"), outsideRead},
		{"inline: offline packages outside", inline("", "      kind: installDocker\n      source: offline\n      packages: "+filepath.Join(outside, "pkgs")+"\n"), outsideRead},
		{"inline: upload src leaves the playbook dir", inline("", "      kind: upload\n      src: ../outside/secret.txt\n      dest: "+filepath.Join(host, "inline-up")+"\n"), "leads out"},
		{"inline: upload src a link out", inline("", "      kind: upload\n      src: link-out\n      dest: "+filepath.Join(host, "inline-link")+"\n"), outsideRead},
		{"inline: inventory include outside", inline("    include: ["+filepath.Join(outside, "inventory.yaml")+"]\n", "      kind: run\n      command: [true]\n"), outsideRead},
		{"inline: inventory include /etc/passwd", inline("    include: [/etc/passwd]\n", "      kind: run\n      command: [true]\n"), outsideRead},
		{"inline: hostKeyPolicy off", map[string]any{"inline": "apiVersion: clusterflow.io/v1\nkind: Playbook\nmetadata: {name: hostile}\nspec:\n  hostKeyPolicy: off\n  inventory:\n    hosts: []\n  steps: []\n"}, "hostKeyPolicy"},
		{"inline: address *", inline(fmt.Sprintf("    defaults: {user: root, port: %d, identityFile: %s, knownHostsFile: %s}\n    hosts:\n      - {name: h1, address: \"*\"}\n", h.Port, key, kh), "      kind: run\n      command: [true]\n"), notAddress},

		// Finding 4: small inputs that would wedge or bloat a run.
		{"inline: template {{range 100000000000}}", inline("", "      kind: upload\n      src: range.tmpl\n      template: true\n      dest: "+filepath.Join(host, "range")+"\n"), "does too much work"},
		{"plan: 600 KiB of vars", plan("b2", func(p *playbooks.Plan) { p.Vars = map[string]string{"blob": strings.Repeat("x", 600<<10)} }), "the limit is 512 KiB"},
		{"plan: 1000 hosts x 5 steps", plan("b3", func(p *playbooks.Plan) {
			h0 := p.Hosts[0]
			p.Hosts = nil
			var names []string
			for i := range 1000 {
				x := h0
				x.Name, x.Address = fmt.Sprintf("n%d", i), fmt.Sprintf("127.1.%d.%d", i/250, i%250+1)
				p.Hosts, names = append(p.Hosts, x), append(names, x.Name)
			}
			s0 := p.Steps[0]
			p.Steps = nil
			for i := range 5 {
				s := s0
				s.Name, s.Hosts = fmt.Sprintf("s%d", i), names
				p.Steps = append(p.Steps, s)
			}
		}), "the limit is 4000"},

		// A procedure started directly, without RunPlaybook: its activities check again.
		{"DistributeKeys directly: cluster key rotated outside", direct{"DistributeKeys", asJSON(workflows.DistributeKeysInput{Hosts: []remote.Host{remoteHost(base(""))},
			Keys: playbooks.DistributeKeysStep{ClusterKey: clusterKey, Rotate: true}})}, outsideWrite},
		{"DistributeKeys directly: address *", direct{"DistributeKeys", asJSON(workflows.DistributeKeysInput{Hosts: []remote.Host{func() remote.Host { x := remoteHost(base("")); x.Address = "*"; return x }()},
			Keys: playbooks.DistributeKeysStep{ClusterKey: filepath.Join(allowed, "ck")}})}, "address"},
		{"ConsulBootstrap directly: gossip key made outside", direct{"ConsulBootstrap", asJSON(workflows.ConsulBootstrapInput{Hosts: []remote.Host{remoteHost(base(""))},
			Consul: playbooks.ConsulStep{Source: playbooks.ConsulFromFile, Binary: motd, SHA256: strings.Repeat("0", 64), GossipKeyFile: filepath.Join(outside, "direct", "g.key")}})}, outsideWrite},

		// Inputs that name a playbook file.
		{"playbook: ../ out of the playbook dir", map[string]any{"playbook": "../outside/x.yaml"}, "outside the worker's playbook directory"},
		{"playbook: absolute path", map[string]any{"playbook": "/etc/passwd"}, "relative to the worker's playbook directory"},
		{"playbook: a link out of the playbook dir", map[string]any{"playbook": "link.yaml"}, outsideRead},
		{"input: empty", map[string]any{}, "give exactly one of"},
		{"input: two of playbook, inline, plan", map[string]any{"playbook": "a.yaml", "inline": "x"}, "give exactly one of"},
	}
	if len(cases) < 60 {
		t.Fatalf("only %d hostile inputs", len(cases))
	}

	// guarded: every file outside the allowed directory, and the host's side.
	before := snapshot(t, root, allowed)
	t.Logf("| # | input | expected refusal | observed |")
	for i, hc := range cases {
		id := fmt.Sprintf("hostile/%02d", i+1)
		typ, input := "", hc.input
		if d, ok := input.(direct); ok {
			typ, input = d.typ, d.input
		}
		err := c.runWorkflow(t, id, typ, input)
		hist := c.historyText(t, id)
		observed := "completed"
		if err != nil {
			observed = oneLine(err.Error())
		}
		if line := lineWith(hist, hc.want); line != "" {
			observed = line
		}
		t.Logf("| %d | %s | %s | %s |", i+1, hc.name, hc.want, observed)
		switch {
		case err == nil && typ == "":
			t.Errorf("%s: the run completed; want a refusal with %q", hc.name, hc.want)
		case err == nil && !strings.Contains(hist, "activityTaskFailedEventAttributes"):
			// A procedure records a host whose activity refused it as failed and
			// may itself complete; the refusal must be there all the same.
			t.Errorf("%s: completed with no failed activity; want a refusal with %q", hc.name, hc.want)
		case !strings.Contains(hist, hc.want):
			t.Errorf("%s: refused, but without %q: %v", hc.name, hc.want, err)
		}
		after := snapshot(t, root, allowed)
		if diff := diffSnapshots(before, after); diff != "" {
			t.Errorf("%s: files changed outside the allowed directory: %s", hc.name, diff)
			before = after
		}
	}

	// No planted secret in any history of the namespace, nor in any log line.
	histories := ""
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var next []byte
	runs := 0
	for {
		resp, err := c.client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default", PageSize: 200, NextPageToken: next})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.Executions {
			histories += c.historyText(t, e.Execution.WorkflowId)
			runs++
		}
		if next = resp.NextPageToken; len(next) == 0 {
			break
		}
	}
	logs := c.logOf(worker) + c.logOf(c.procs[0])
	found := 0
	for _, text := range []string{histories, logs} {
		found += strings.Count(text, planted)
	}
	t.Logf("scanned %d histories (%d bytes) and %d log lines for %s: %d found", runs, len(histories), strings.Count(logs, "\n"), planted, found)
	if found > 0 {
		t.Errorf("a planted secret leaked: %s", lineWith(histories+logs, planted))
	}
}

// runWorkflow starts a workflow of type typ (empty: RunPlaybook) with input
// (decoded JSON, as the Web UI sends it) and returns its error once it closes.
func (c *cluster) runWorkflow(t *testing.T, id, typ string, input any) error {
	t.Helper()
	if typ == "" {
		typ = workflows.RunPlaybookName
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	run, err := c.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue}, typ, input)
	if err != nil {
		t.Fatalf("starting %s: %v", id, err)
	}
	return run.Get(ctx, nil)
}

// remoteHost is the first host of a plan as a procedure's input carries it.
func remoteHost(p playbooks.Plan) remote.Host {
	h := p.Hosts[0]
	return remote.Host{Name: h.Name, Address: h.Address, Port: h.Port, User: h.User, IdentityFile: h.IdentityFile,
		KnownHostsFile: h.KnownHostsFile, HostKeyPolicy: h.HostKeyPolicy}
}

// historyText is a run's whole history as JSON text.
func (c *cluster) historyText(t *testing.T, id string) string {
	t.Helper()
	b, err := protojson.Marshal(c.history(t, id))
	if err != nil {
		t.Fatal(err)
	}
	// Failure messages are JSON strings: unescape what matters for matching.
	return strings.NewReplacer(`\"`, `"`, `\n`, "\n", `\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(string(b))
}

// snapshot maps every file and directory under root, except under skip and the
// server's state directory, to its mode and content digest.
func snapshot(t *testing.T, root, skip string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip || p == filepath.Join(root, "state") { // allowed, and the server's own state
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		sum := ""
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			sum = hex.EncodeToString(s[:8])
		}
		out[p] = fmt.Sprintf("%v %s", info.Mode(), sum)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffSnapshots(a, b map[string]string) string {
	var d []string
	for p, v := range b {
		if w, ok := a[p]; !ok {
			d = append(d, "created "+p)
		} else if w != v {
			d = append(d, "changed "+p)
		}
	}
	for p := range a {
		if _, ok := b[p]; !ok {
			d = append(d, "removed "+p)
		}
	}
	return strings.Join(d, ", ")
}

// lineWith is the first line of text holding s, shortened.
func lineWith(text, s string) string {
	for _, l := range strings.Split(text, "\n") {
		if i := strings.Index(l, s); i >= 0 {
			from := max(0, i-80)
			to := min(len(l), i+len(s)+80)
			return strings.TrimSpace(l[from:to])
		}
	}
	return ""
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
