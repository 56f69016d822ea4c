package playbooks

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// normalizeAgain sends a parsed plan through JSON, as a run's input travels, and
// checks that Plan.Normalize (what the workflows call) accepts it and leaves it as
// the parser made it: the parser's output is already normal.
func normalizeAgain(t *testing.T, plan *Plan) {
	t.Helper()
	b, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Normalize(); err != nil {
		t.Fatalf("Normalize refuses a parsed plan: %v", err)
	}
	comparePlans(t, &back, plan)
}

func TestNormalizeAppliesDefaults(t *testing.T) {
	hosts := []string{"a", "b"}
	sc := Scope{Hosts: hosts, Inventory: hosts}

	d := InstallDockerStep{Source: DockerFromRepo, Mirror: "https://mirror.test/linux//"}
	if ps := d.Normalize(sc); len(ps) > 0 || d.Mirror != "https://mirror.test/linux" {
		t.Errorf("docker: %+v %v", d, ps)
	}
	d = InstallDockerStep{}
	if d.Normalize(sc); d.Source != DockerFromDistro {
		t.Errorf("docker source %q, want distro", d.Source)
	}

	c := ConsulStep{Binary: "/w/consul", SHA256: strings.Repeat("AB", 32), GossipKeyFile: "/w/key"}
	if ps := c.Normalize(sc); len(ps) > 0 || c.Source != ConsulFromFile || c.Datacenter != "dc1" ||
		!slices.Equal(c.Servers, hosts) || c.SHA256 != strings.Repeat("ab", 32) {
		t.Errorf("consul: %+v %v", c, ps)
	}

	w := SwarmInitStep{}
	if ps := w.Normalize(sc); len(ps) > 0 || !slices.Equal(w.Managers, []string{"a"}) {
		t.Errorf("swarm: %+v %v", w, ps)
	}

	k := CheckCertificatesStep{Action: CertActionRotate, Manager: "b"}
	if ps := k.Normalize(sc); len(ps) > 0 || k.MinValidity.Std() != defaultMinValidity || k.Rotate == nil || k.Rotate.Manager != "b" {
		t.Errorf("certificates: %+v %v", k, ps)
	}

	v := ServiceStep{Service: "web", Ports: []ServicePort{{Published: 80, Target: 8080}}, Mounts: []ServiceMount{{Target: "/data"}}}
	if ps := v.Normalize(sc); len(ps) > 0 || v.Ports[0].Protocol != "tcp" || v.Ports[0].Mode != PortIngress || v.Mounts[0].Type != "volume" {
		t.Errorf("service: %+v %v", v, ps)
	}

	b := BuildImageStep{Dir: "/pb", Context: "images/web", Tag: "web:1"}
	if ps := b.Normalize(sc); len(ps) > 0 || b.Dockerfile != "Dockerfile" {
		t.Errorf("build: %+v %v", b, ps)
	}
	st := StackStep{Stack: "demo", Compose: []string{"stacks/demo/compose.yaml"}, Dir: "/pb"}
	if ps := st.Normalize(sc); len(ps) > 0 {
		t.Errorf("stack: %+v %v", st, ps)
	}
}

// TestNormalizeRefuses gives each step type settings a JSON input could carry and
// the parser would refuse, and checks the field the problem names.
func TestNormalizeRefuses(t *testing.T) {
	hosts := []string{"a", "b"}
	sc := Scope{Hosts: hosts, Inventory: append(slices.Clone(hosts), "c")}
	type settings interface{ Normalize(Scope) Problems }
	cases := []struct {
		name  string
		s     settings
		field string
		msg   string
	}{
		{"run no command", &RunStep{}, "command", "is required"},
		{"stack no dir", &StackStep{Stack: "demo", Compose: []string{"c.yaml"}}, "dir", "is required"},
		{"stack relative dir", &StackStep{Stack: "demo", Compose: []string{"c.yaml"}, Dir: "pb"}, "dir", "must be an absolute path"},
		{"stack compose not yaml", &StackStep{Stack: "demo", Compose: []string{"c.json"}, Dir: "/pb"}, "compose", "a Compose file's name ends in .yaml"},
		{"stack compose unclean", &StackStep{Stack: "demo", Compose: []string{"a/./c.yaml"}, Dir: "/pb"}, "compose", "must be a clean relative path"},
		{"stack compose absolute", &StackStep{Stack: "demo", Compose: []string{"/etc/c.yaml"}, Dir: "/pb"}, "compose", "must be a path relative"},
		{"stack manager unknown", &StackStep{Stack: "demo", Compose: []string{"c.yaml"}, Dir: "/pb", Manager: "z"}, "manager", "is not in the inventory"},
		{"stack auth both", &StackStep{Stack: "demo", Compose: []string{"c.yaml"}, Dir: "/pb",
			RegistryAuth: &RegistryAuth{Server: "r.test", Username: "u", PasswordEnv: "P", PasswordFile: "p"}}, "registryAuth.passwordEnv", "give passwordFile or passwordEnv"},
		{"stack auth scheme", &StackStep{Stack: "demo", Compose: []string{"c.yaml"}, Dir: "/pb",
			RegistryAuth: &RegistryAuth{Server: "https://r.test", Username: "u", PasswordEnv: "P"}}, "registryAuth.server", "must be a registry host"},
		{"build dockerfile outside", &BuildImageStep{Dir: "/pb", Context: "c", Dockerfile: "../Dockerfile", Tag: "w:1"}, "dockerfile", "must stay inside"},
		{"build tag upper", &BuildImageStep{Dir: "/pb", Context: "c", Tag: "Web:1"}, "tag", "must be an image reference"},
		{"build arg name", &BuildImageStep{Dir: "/pb", Context: "c", Tag: "w:1", Args: map[string]string{"1X": "y"}}, "args.1X", "a build argument's name"},
		{"remove op", &RemoveStep{Op: "removeAll", Name: "x"}, "op", "must be removeService"},
		{"remove name", &RemoveStep{Op: KindRemoveNetwork, Name: "bad name"}, "network", "must be letters"},
		{"service mode", &ServiceStep{Service: "web", Mode: "daemon"}, "mode", "must be replicated, global"},
		{"service aliases", &ServiceStep{Service: "web", NetworkAliases: map[string][]string{"front": {"www"}}}, "networkAliases", "aliases for \"front\""},
		{"service secret mode", &ServiceStep{Service: "web", Secrets: []ObjectRef{{Source: "pw", Mode: 0o1777}}}, "secrets[0].mode", "must be at most 0777"},
		{"service cpus", &ServiceStep{Service: "web", Resources: &ServiceResources{Limits: &ResourceValues{CPUs: "lots"}}}, "resources.limits.cpus", "must be a number of CPUs"},
		{"run relative dir", &RunStep{Command: []string{"true"}, Dir: "tmp"}, "dir", "must be an absolute path"},
		{"run env name", &RunStep{Command: []string{"true"}, Env: map[string]string{"1A": "x"}}, "env.1A", "must be letters"},
		{"run exit code", &RunStep{Command: []string{"true"}, ExitCodes: []int{0, 300}}, "exitCodes[1]", "between 0 and 255"},
		{"upload relative src", &UploadStep{Src: "motd", Dest: "/etc/motd"}, "src", "absolute path on the worker"},
		{"upload dir dest", &UploadStep{Src: "/w/motd", Dest: "/etc/"}, "dest", "not of a directory"},
		{"upload mode", &UploadStep{Src: "/w/motd", Dest: "/etc/motd", Mode: 0o17777}, "mode", "at most 07777"},
		{"upload owner", &UploadStep{Src: "/w/motd", Dest: "/etc/motd", Owner: "x y"}, "owner", "must be a user name"},
		{"keys companion", &DistributeKeysStep{ClusterKey: "/k/cluster.next"}, "clusterKey", "companion file"},
		{"keys unclean", &DistributeKeysStep{ClusterKey: "/k/../cluster"}, "clusterKey", "clean absolute path"},
		{"keys user", &DistributeKeysStep{ClusterKey: "/k/cluster", User: "1x"}, "user", "must be a user name"},
		{"docker version", &InstallDockerStep{Version: "latest"}, "version", "Debian package version"},
		{"docker user twice", &InstallDockerStep{Users: []string{"ops", "ops"}}, "users[1]", "listed twice"},
		{"docker offline", &InstallDockerStep{Source: DockerFromOffline}, "packages", "is required"},
		{"swarm manager", &SwarmInitStep{Managers: []string{"c"}}, "managers", "among the step's hosts"},
		{"swarm label host", &SwarmInitStep{Labels: map[string]map[string]string{"c": {"zone": "x"}}}, "labels.c", "per host of the step"},
		{"swarm network", &SwarmInitStep{Networks: []OverlayNetwork{{Name: "a"}, {Name: "a"}}}, "networks[1].name", "listed twice"},
		{"swarm advertise", &SwarmInitStep{AdvertiseAddr: "eth 0"}, "advertiseAddr", "must be"},
		{"node op", &NodeStep{Op: "reboot"}, "op", "not one of"},
		{"node force", &NodeStep{Op: KindDrain, Force: true}, "force", "only used with removeNode"},
		{"node manager", &NodeStep{Op: KindDrain, Manager: "z"}, "manager", "not in the inventory"},
		{"consul iface", &ConsulStep{Binary: "/w/c", SHA256: strings.Repeat("a", 64), GossipKeyFile: "/k", BindInterface: "eth/1"}, "bindInterface", "interface name"},
		{"consul server", &ConsulStep{Servers: []string{"c"}, Binary: "/w/c", SHA256: strings.Repeat("a", 64), GossipKeyFile: "/k"}, "servers", "among the step's hosts"},
		{"ca expiry", &RotateCAStep{NodeCertExpiry: Duration(time.Minute)}, "nodeCertExpiry", "between 1h"},
		{"ca half", &RotateCAStep{CAKey: "/ca.key"}, "caKey", "needs caCert too"},
		{"cert action", &CheckCertificatesStep{Action: "renew"}, "action", "must be fail"},
		{"cert expiry", &CheckCertificatesStep{Rotate: &RotateCAStep{NodeCertExpiry: Duration(time.Hour)}}, "nodeCertExpiry", "rotation only"},
		{"service name", &ServiceStep{Service: "web app"}, "service", "must be letters"},
		{"service port", &ServiceStep{Service: "web", Ports: []ServicePort{{Published: 80, Target: 80}, {Published: 80, Target: 81}}}, "ports[1]", "published twice"},
		{"service mount", &ServiceStep{Service: "web", Mounts: []ServiceMount{{Type: "bind", Target: "/x"}}}, "mounts[0].source", "is required"},
		{"service policy", &ServiceStep{Service: "web", Rollback: &UpdatePolicy{FailureAction: FailureRollback}}, "rollbackConfig.failureAction", "cannot roll back"},
		{"service health", &ServiceStep{Service: "web", HealthCheck: &HealthCheck{Test: []string{"CMD"}}}, "healthCheck.test", "needs the command"},
		{"upgrade version", &RollingUpgradeStep{}, "version", "is required"},
		{"upgrade budget", &RollingUpgradeStep{Docker: InstallDockerStep{Version: "1.0"}, MaxUnavailable: 150}, "maxUnavailable", "percentage"},
	}
	for _, c := range cases {
		ps := c.s.Normalize(sc)
		if len(ps) == 0 || ps[0].Field != c.field || !strings.Contains(ps[0].Msg, c.msg) {
			t.Errorf("%s: got %v, want %s: ...%s...", c.name, ps, c.field, c.msg)
		}
	}
}

func TestStepNormalize(t *testing.T) {
	inventory := []string{"a", "b"}
	good := func() Step {
		return Step{Name: "x", Kind: KindInstallDocker, Hosts: []string{"a"}, Parallel: 1, Timeout: Duration(time.Minute),
			Attempts: 1, InstallDocker: &InstallDockerStep{}}
	}
	for name, c := range map[string]struct {
		edit  func(*Step)
		field string
		msg   string
	}{
		"settings missing": {func(s *Step) { s.InstallDocker = nil }, "", "kind installDocker needs installDocker"},
		"unknown kind":     {func(s *Step) { s.Kind = "shell" }, "kind", "unknown step kind"},
		"node op":          {func(s *Step) { s.Kind, s.Node = KindDrain, &NodeStep{Op: KindPromote} }, "", `needs node.op "drain"`},
		"no hosts":         {func(s *Step) { s.Hosts = nil }, "hosts", "is required"},
		"unknown host":     {func(s *Step) { s.Hosts = []string{"z"} }, "hosts", `host "z" is not in the inventory`},
		"parallel":         {func(s *Step) { s.Parallel = 0 }, "parallel", "between 1 and 1000"},
		"timeout":          {func(s *Step) { s.Timeout = Duration(48 * time.Hour) }, "timeout", "between 1s and 24h, got 48h"},
		"name":             {func(s *Step) { s.Name = "two\nlines" }, "name", "one line"},
	} {
		s := good()
		c.edit(&s)
		ps := s.Normalize(inventory)
		if len(ps) == 0 || ps[0].Field != c.field || !strings.Contains(ps[0].Msg, c.msg) {
			t.Errorf("%s: got %v, want %q: ...%s...", name, ps, c.field, c.msg)
		}
	}
	s := good()
	if ps := s.Normalize(inventory); len(ps) > 0 || s.InstallDocker.Source != DockerFromDistro {
		t.Errorf("good step: %v, %+v", ps, s.InstallDocker)
	}
	p := &Plan{Name: "p", Hosts: []Host{{Name: "a", Address: "127.0.0.1", Port: 22, User: "root", IdentityFile: "/k/id", KnownHostsFile: "/k/known_hosts", HostKeyPolicy: HostKeyStrict}},
		Steps: []Step{good(), good()}}
	p.Steps[1].Name, p.Steps[1].Parallel = "y", 0
	if err := p.Normalize(); err == nil || !strings.HasPrefix(err.Error(), "plan.steps[1] (y): parallel: must be between") {
		t.Errorf("plan: %v", err)
	}
}

// TestKindsHaveRules: every step kind normalizes its settings, and doc.go's field
// reference names every kind. TestFieldUseDocumented and TestReferenceComplete
// (fielduse_test.go) hold README.md and doc.go to every kind, field and key.
func TestKindsHaveRules(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Kinds() {
		if stepKinds[k].normalize == nil || stepKinds[k].read == nil {
			t.Errorf("kind %s has no read or normalize function", k)
		}
		if !strings.Contains(string(doc), k) {
			t.Errorf("doc.go does not mention kind %s", k)
		}
	}
}
