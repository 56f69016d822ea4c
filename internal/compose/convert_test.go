package compose

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
)

func ptr[T any](v T) *T { return &v }

// base is what docker/cli's convert.Service writes for a service called web
// with image web:1 and nothing else, in the stack st: every pointer it always
// sets (Privileges, Resources, Placement, EndpointSpec), the stack labels, the
// default network with the service's name as alias.
func base() swarm.ServiceSpec {
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "st_web", Labels: map[string]string{LabelNamespace: "st", LabelImage: "web:1"}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: "web:1", Labels: map[string]string{LabelNamespace: "st"},
				Privileges: &swarm.Privileges{}},
			Resources: &swarm.ResourceRequirements{},
			Placement: &swarm.Placement{},
			Networks:  []swarm.NetworkAttachmentConfig{{Target: "st_default", Aliases: []string{"web"}}},
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{}},
		EndpointSpec: &swarm.EndpointSpec{Ports: []swarm.PortConfig{}},
	}
}

func web(edit func(*types.ServiceConfig)) types.ServiceConfig {
	s := types.ServiceConfig{Name: "web", ContainerSpec: types.ContainerSpec{Image: "web:1"}}
	if edit != nil {
		edit(&s)
	}
	return s
}

func spec(edit func(*swarm.ServiceSpec)) swarm.ServiceSpec {
	s := base()
	edit(&s)
	return s
}

func dur(d time.Duration) *types.Duration { v := types.Duration(d); return &v }

// TestServiceSpec converts services field by field and compares with what
// docker/cli's cli/compose/convert (service.go, volume.go) writes for the same
// input, worked out from that code; the documented differences of ServiceSpec
// are cases of their own.
func TestServiceSpec(t *testing.T) {
	refs := Refs{
		Networks: types.Networks{"front": {Name: "st_front"}, "ext": {Name: "shared", External: true}},
		Volumes: types.Volumes{"data": {Name: "st_data", Driver: "local", DriverOpts: map[string]string{"type": "tmpfs"}, Labels: types.Labels{"a": "b"}},
			"old": {Name: "legacy", External: true}},
		Secrets: types.Secrets{"pw": {Name: "st_pw"}, "key": {Name: "st_key"}},
		Configs: types.Configs{"conf": {Name: "st_conf"}},
	}
	cases := []struct {
		name string
		ns   Namespace
		svc  types.ServiceConfig
		want swarm.ServiceSpec
	}{
		{"minimal", "st", web(nil), base()},
		{"container fields", "st", web(func(s *types.ServiceConfig) {
			s.Entrypoint = types.ShellCommand{"/entry"}
			s.Command = types.ShellCommand{"serve", "--port", "80"}
			s.WorkingDir, s.User, s.Hostname = "/srv", "1000:1000", "web-host"
			s.Environment = types.MappingWithEquals{"B": ptr("2"), "A": ptr("1")}
			s.Labels = types.Labels{"c": "d"}
			s.StopGracePeriod, s.StopSignal = dur(30*time.Second), "SIGINT"
			s.ReadOnly, s.Init, s.Tty, s.StdinOpen = true, ptr(true), true, true
			s.Deploy = &types.DeployConfig{Labels: types.Labels{"e": "f"}}
		}), spec(func(w *swarm.ServiceSpec) {
			w.Labels["e"] = "f"
			c := w.TaskTemplate.ContainerSpec
			c.Command, c.Args = []string{"/entry"}, []string{"serve", "--port", "80"}
			c.Dir, c.User, c.Hostname = "/srv", "1000:1000", "web-host"
			c.Env = []string{"A=1", "B=2"}
			c.Labels["c"] = "d"
			c.StopGracePeriod, c.StopSignal = ptr(30*time.Second), "SIGINT"
			c.ReadOnly, c.Init, c.TTY, c.OpenStdin = true, ptr(true), true, true
		})},
		{"global", "st", web(func(s *types.ServiceConfig) { s.Deploy = &types.DeployConfig{Mode: "global"} }),
			spec(func(w *swarm.ServiceSpec) { w.Mode = swarm.ServiceMode{Global: &swarm.GlobalService{}} })},
		{"replicated", "st", web(func(s *types.ServiceConfig) { s.Deploy = &types.DeployConfig{Replicas: ptr(3)} }),
			spec(func(w *swarm.ServiceSpec) { w.Mode.Replicated.Replicas = ptr(uint64(3)) })},
		{"replicated job", "st", web(func(s *types.ServiceConfig) { s.Deploy = &types.DeployConfig{Mode: "replicated-job", Replicas: ptr(5)} }),
			spec(func(w *swarm.ServiceSpec) {
				w.Mode = swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: ptr(uint64(5)), TotalCompletions: ptr(uint64(5))}}
			})},
		{"global job", "st", web(func(s *types.ServiceConfig) { s.Deploy = &types.DeployConfig{Mode: "global-job"} }),
			spec(func(w *swarm.ServiceSpec) { w.Mode = swarm.ServiceMode{GlobalJob: &swarm.GlobalJob{}} })},
		{"ports ingress and host, sorted", "st", web(func(s *types.ServiceConfig) {
			s.Ports = []types.ServicePortConfig{
				{Target: 9100, Published: "9100", Mode: "host", Protocol: "tcp"},
				{Target: 80, Published: "8080", Mode: "ingress", Protocol: "tcp"},
				{Target: 53, Published: "53", Mode: "ingress", Protocol: "udp", Name: "dns"},
				{Target: 443},
			}
		}), spec(func(w *swarm.ServiceSpec) {
			w.EndpointSpec.Ports = []swarm.PortConfig{
				{Protocol: "tcp", TargetPort: 443, PublishMode: "ingress"},
				{Name: "dns", Protocol: "udp", TargetPort: 53, PublishedPort: 53, PublishMode: "ingress"},
				{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: "ingress"},
				{Protocol: "tcp", TargetPort: 9100, PublishedPort: 9100, PublishMode: "host"},
			}
		})},
		{"dnsrr", "st", web(func(s *types.ServiceConfig) { s.Deploy = &types.DeployConfig{EndpointMode: "DNSRR"} }),
			spec(func(w *swarm.ServiceSpec) { w.EndpointSpec.Mode = swarm.ResolutionModeDNSRR })},
		{"resources", "st", web(func(s *types.ServiceConfig) {
			s.Deploy = &types.DeployConfig{Resources: types.Resources{
				Limits:       &types.Resource{NanoCPUs: 0.5, MemoryBytes: 64 << 20, Pids: 100},
				Reservations: &types.Resource{NanoCPUs: 0.1, MemoryBytes: 16 << 20},
			}}
		}), spec(func(w *swarm.ServiceSpec) {
			w.TaskTemplate.Resources = &swarm.ResourceRequirements{
				Limits:       &swarm.Limit{NanoCPUs: 500000000, MemoryBytes: 64 << 20, Pids: 100},
				Reservations: &swarm.Resources{NanoCPUs: 100000000, MemoryBytes: 16 << 20},
			}
		})},
		{"restart policy", "st", web(func(s *types.ServiceConfig) {
			s.Deploy = &types.DeployConfig{RestartPolicy: &types.RestartPolicy{Condition: "on-failure", Delay: dur(time.Second),
				MaxAttempts: ptr(uint64(3)), Window: dur(time.Minute)}}
		}), spec(func(w *swarm.ServiceSpec) {
			w.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: "on-failure", Delay: ptr(time.Second),
				MaxAttempts: ptr(uint64(3)), Window: ptr(time.Minute)}
		})},
		{"restart always", "st", web(func(s *types.ServiceConfig) { s.Restart = "always" }),
			spec(func(w *swarm.ServiceSpec) { w.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: "any"} })},
		{"restart on-failure:2", "st", web(func(s *types.ServiceConfig) { s.Restart = "on-failure:2" }),
			spec(func(w *swarm.ServiceSpec) {
				w.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: "on-failure", MaxAttempts: ptr(uint64(2))}
			})},
		// docker/cli drops restart: "no", which leaves swarm's default (restart always)
		{"restart no is none", "st", web(func(s *types.ServiceConfig) { s.Restart = "no" }),
			spec(func(w *swarm.ServiceSpec) { w.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: "none"} })},
		{"placement", "st", web(func(s *types.ServiceConfig) {
			s.Deploy = &types.DeployConfig{Placement: types.Placement{Constraints: []string{"node.role==worker"},
				Preferences: []types.PlacementPreferences{{Spread: "node.labels.zone"}}, MaxReplicas: 2}}
		}), spec(func(w *swarm.ServiceSpec) {
			w.TaskTemplate.Placement = &swarm.Placement{Constraints: []string{"node.role==worker"},
				Preferences: []swarm.PlacementPreference{{Spread: &swarm.SpreadOver{SpreadDescriptor: "node.labels.zone"}}}, MaxReplicas: 2}
		})},
		{"healthcheck", "st", web(func(s *types.ServiceConfig) {
			s.HealthCheck = &types.HealthCheckConfig{Test: types.HealthCheckTest{"CMD-SHELL", "curl -f localhost"},
				Interval: dur(10 * time.Second), Timeout: dur(time.Second), Retries: ptr(uint64(3)), StartPeriod: dur(5 * time.Second)}
		}), spec(func(w *swarm.ServiceSpec) {
			w.TaskTemplate.ContainerSpec.Healthcheck = &container.HealthConfig{Test: []string{"CMD-SHELL", "curl -f localhost"},
				Interval: 10 * time.Second, Timeout: time.Second, Retries: 3, StartPeriod: 5 * time.Second}
		})},
		{"healthcheck disabled", "st", web(func(s *types.ServiceConfig) { s.HealthCheck = &types.HealthCheckConfig{Disable: true} }),
			spec(func(w *swarm.ServiceSpec) {
				w.TaskTemplate.ContainerSpec.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
			})},
		{"update and rollback", "st", web(func(s *types.ServiceConfig) {
			s.Deploy = &types.DeployConfig{
				UpdateConfig:   &types.UpdateConfig{Parallelism: ptr(uint64(2)), Delay: types.Duration(5 * time.Second), FailureAction: "rollback", Monitor: types.Duration(time.Minute), MaxFailureRatio: 0.2, Order: "start-first"},
				RollbackConfig: &types.UpdateConfig{FailureAction: "pause"},
			}
		}), spec(func(w *swarm.ServiceSpec) {
			w.UpdateConfig = &swarm.UpdateConfig{Parallelism: 2, Delay: 5 * time.Second, FailureAction: "rollback", Monitor: time.Minute, MaxFailureRatio: 0.2, Order: "start-first"}
			w.RollbackConfig = &swarm.UpdateConfig{Parallelism: 1, FailureAction: "pause"}
		})},
		{"networks with aliases", "st", web(func(s *types.ServiceConfig) {
			s.Networks = map[string]*types.ServiceNetworkConfig{"front": {Aliases: []string{"www"}, DriverOpts: types.Options{"x": "y"}}, "ext": nil}
		}), spec(func(w *swarm.ServiceSpec) {
			w.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{
				{Target: "shared", Aliases: []string{"web"}},
				{Target: "st_front", Aliases: []string{"www", "web"}, DriverOpts: map[string]string{"x": "y"}},
			}
		})},
		{"mounts", "st", web(func(s *types.ServiceConfig) {
			s.Volumes = []types.ServiceVolumeConfig{
				{Type: "volume", Source: "data", Target: "/data", Volume: &types.ServiceVolumeVolume{NoCopy: true}},
				{Type: "volume", Source: "old", Target: "/old", ReadOnly: true, Volume: &types.ServiceVolumeVolume{}},
				{Type: "volume", Target: "/scratch"},
				{Type: "bind", Source: "/srv/www", Target: "/www", ReadOnly: true, Bind: &types.ServiceVolumeBind{Propagation: "rslave"}},
				{Type: "tmpfs", Target: "/tmp", Tmpfs: &types.ServiceVolumeTmpfs{Size: 1 << 20}},
			}
		}), spec(func(w *swarm.ServiceSpec) {
			w.TaskTemplate.ContainerSpec.Mounts = []mount.Mount{
				{Type: "volume", Source: "st_data", Target: "/data", VolumeOptions: &mount.VolumeOptions{NoCopy: true,
					Labels: map[string]string{"a": "b", LabelNamespace: "st"}, DriverConfig: &mount.Driver{Name: "local", Options: map[string]string{"type": "tmpfs"}}}},
				{Type: "volume", Source: "legacy", Target: "/old", ReadOnly: true, VolumeOptions: &mount.VolumeOptions{}},
				{Type: "volume", Target: "/scratch"},
				{Type: "bind", Source: "/srv/www", Target: "/www", ReadOnly: true, BindOptions: &mount.BindOptions{Propagation: "rslave"}},
				{Type: "tmpfs", Target: "/tmp", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 1 << 20}},
			}
		})},
		{"secrets and configs", "st", web(func(s *types.ServiceConfig) {
			s.Secrets = []types.ServiceSecretConfig{
				{Source: "pw", Target: "/run/secrets/pw"},
				{Source: "key", Target: "/etc/tls/key.pem", UID: "100", GID: "101", Mode: ptr(types.FileMode(0o400))},
			}
			s.Configs = []types.ServiceConfigObjConfig{{Source: "conf", Target: "/conf"}}
		}), spec(func(w *swarm.ServiceSpec) {
			c := w.TaskTemplate.ContainerSpec
			c.Secrets = []*swarm.SecretReference{
				{SecretName: "st_key", File: &swarm.SecretReferenceFileTarget{Name: "/etc/tls/key.pem", UID: "100", GID: "101", Mode: 0o400}},
				{SecretName: "st_pw", File: &swarm.SecretReferenceFileTarget{Name: "pw", UID: "0", GID: "0", Mode: 0o444}},
			}
			c.Configs = []*swarm.ConfigReference{{ConfigName: "st_conf", File: &swarm.ConfigReferenceFileTarget{Name: "conf", UID: "0", GID: "0", Mode: 0o444}}}
		})},
		{"kernel settings", "st", web(func(s *types.ServiceConfig) {
			s.CapAdd, s.CapDrop = []string{"net_admin"}, []string{"CAP_MKNOD", "chown"}
			s.Sysctls = types.Mapping{"net.core.somaxconn": "1024"}
			s.Ulimits = map[string]*types.UlimitsConfig{"nofile": {Soft: 1024, Hard: 2048}, "nproc": {Single: 64}}
			s.OomScoreAdj = 100
			s.ExtraHosts = types.HostsList{"db": {"10.0.0.5"}}
			s.DNS, s.DNSSearch, s.DNSOpts = types.StringList{"10.0.0.2"}, types.StringList{"lab"}, []string{"ndots:1"}
			s.Logging = &types.LoggingConfig{Driver: "json-file", Options: types.Options{"max-size": "10m"}}
		}), spec(func(w *swarm.ServiceSpec) {
			c := w.TaskTemplate.ContainerSpec
			c.CapabilityAdd, c.CapabilityDrop = []string{"CAP_NET_ADMIN"}, []string{"CAP_CHOWN", "CAP_MKNOD"}
			c.Sysctls = map[string]string{"net.core.somaxconn": "1024"}
			c.Ulimits = []*container.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}, {Name: "nproc", Soft: 64, Hard: 64}}
			c.OomScoreAdj = 100
			c.Hosts = []string{"10.0.0.5 db"}
			c.DNSConfig = &swarm.DNSConfig{Nameservers: []string{"10.0.0.2"}, Search: []string{"lab"}, Options: []string{"ndots:1"}}
			w.TaskTemplate.LogDriver = &swarm.Driver{Name: "json-file", Options: map[string]string{"max-size": "10m"}}
		})},
		// the zero Namespace: a standalone service (deployService) as `docker service create` makes it
		{"no namespace", "", web(func(s *types.ServiceConfig) {
			s.Networks = map[string]*types.ServiceNetworkConfig{"ext": nil}
		}), spec(func(w *swarm.ServiceSpec) {
			w.Name, w.Labels, w.TaskTemplate.ContainerSpec.Labels = "web", nil, nil
			w.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "shared"}}
		})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ServiceSpec(c.ns, c.svc, refs)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
				diffSpec(t, got, c.want)
			}
		})
	}
}

// diffSpec names the fields of a spec that differ, for a readable failure.
func diffSpec(t *testing.T, got, want swarm.ServiceSpec) {
	t.Helper()
	g, w := reflect.ValueOf(got.TaskTemplate), reflect.ValueOf(want.TaskTemplate)
	for i := range g.NumField() {
		if !reflect.DeepEqual(g.Field(i).Interface(), w.Field(i).Interface()) {
			t.Errorf("TaskTemplate.%s differs", g.Type().Field(i).Name)
		}
	}
	if gc, wc := got.TaskTemplate.ContainerSpec, want.TaskTemplate.ContainerSpec; gc != nil && wc != nil {
		g, w := reflect.ValueOf(*gc), reflect.ValueOf(*wc)
		for i := range g.NumField() {
			if !reflect.DeepEqual(g.Field(i).Interface(), w.Field(i).Interface()) {
				t.Errorf("ContainerSpec.%s: got %#v, want %#v", g.Type().Field(i).Name, g.Field(i).Interface(), w.Field(i).Interface())
			}
		}
	}
}

// TestServiceSpecErrors: every bad value is a FieldError naming its field
// relative to the service, as a deployService step maps them to its own names.
func TestServiceSpecErrors(t *testing.T) {
	svc := web(func(s *types.ServiceConfig) {
		s.Image = ""
		s.Deploy = &types.DeployConfig{Mode: "global", Replicas: ptr(2),
			Resources:      types.Resources{Limits: &types.Resource{NanoCPUs: -1}},
			RestartPolicy:  &types.RestartPolicy{Condition: "maybe"},
			UpdateConfig:   &types.UpdateConfig{Order: "sideways"},
			RollbackConfig: &types.UpdateConfig{FailureAction: "rollback"}}
		s.Ports = []types.ServicePortConfig{{Target: 80, Published: "99999", Mode: "mesh", Protocol: "icmp"}}
		s.Secrets = []types.ServiceSecretConfig{{Source: "nope"}}
		s.Volumes = []types.ServiceVolumeConfig{{Type: "volume", Source: "nope", Target: "/x"}, {Type: "bind", Source: "rel", Target: "y"}}
		s.Environment = types.MappingWithEquals{"UNSET": nil}
	})
	_, err := ServiceSpec("st", svc, Refs{})
	got := map[string]bool{}
	for _, fe := range FieldErrors(err) {
		got[fe.Field] = true
	}
	for _, f := range []string{"image", "deploy.replicas", "deploy.resources.limits.cpus", "deploy.restart_policy.condition",
		"deploy.update_config.order", "deploy.rollback_config.failure_action", "ports[0].mode", "ports[0].protocol",
		"ports[0].published", "secrets[0]", "volumes[0].source", "volumes[1].source", "volumes[1].target", "environment.UNSET"} {
		if !got[f] {
			t.Errorf("no FieldError for %s; got %v", f, err)
		}
	}
}

func TestResolveObjects(t *testing.T) {
	spec, err := ServiceSpec("st", web(func(s *types.ServiceConfig) {
		s.Secrets = []types.ServiceSecretConfig{{Source: "pw"}}
	}), Refs{Secrets: types.Secrets{"pw": {}}})
	if err != nil {
		t.Fatal(err)
	}
	resolved := spec
	if err := ResolveObjects(&resolved, map[string]ObjectID{"st_pw": {ID: "s1", Name: "st_pw-0123456789ab"}}, nil); err != nil {
		t.Fatal(err)
	}
	if r := resolved.TaskTemplate.ContainerSpec.Secrets[0]; r.SecretID != "s1" || r.SecretName != "st_pw-0123456789ab" {
		t.Errorf("resolved %+v", r)
	}
	if r := spec.TaskTemplate.ContainerSpec.Secrets[0]; r.SecretID != "" || r.SecretName != "st_pw" {
		t.Errorf("ResolveObjects changed the spec it was given: %+v", r)
	}
	if err := ResolveObjects(&spec, nil, nil); err == nil || !strings.Contains(err.Error(), "secret st_pw") {
		t.Errorf("missing object: %v", err)
	}
}

func TestVersionedName(t *testing.T) {
	d := ContentDigest([]byte("x"))
	got, err := VersionedName("st_pw", d)
	if err != nil || got != "st_pw-"+strings.TrimPrefix(d, "sha256:")[:12] {
		t.Errorf("VersionedName = %q, %v", got, err)
	}
	if _, err := VersionedName(strings.Repeat("a", 60), d); err == nil {
		t.Error("a name over 64 characters was accepted")
	}
	if _, err := VersionedName("st_pw", "md5:abc"); err == nil {
		t.Error("a bad digest was accepted")
	}
}

func TestDigest(t *testing.T) {
	root := invalidRoot(t)
	if err := os.WriteFile(root+"/pw.txt", []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Digest(root, Source{File: "pw.txt"}, nil)
	if err != nil || d != ContentDigest([]byte("s3cret")) {
		t.Errorf("Digest(file) = %q, %v", d, err)
	}
	env := func(k string) (string, bool) { return map[string]string{"PW": "s3cret"}[k], k == "PW" }
	if e, err := Digest(root, Source{Env: "PW"}, env); err != nil || e != d {
		t.Errorf("Digest(env) = %q, %v; want %q", e, err, d)
	}
	for _, src := range []Source{{File: "../outside.txt"}, {File: "link-out.txt"}, {File: "/etc/hostname"}, {Env: "NOPE"}, {}} {
		_, err := Digest(root, src, env)
		if err == nil {
			t.Errorf("Digest(%+v) read it", src)
		} else if strings.Contains(err.Error(), outsideContent) {
			t.Errorf("Digest(%+v) quotes the file: %v", src, err)
		}
	}
}

func TestPortConfig(t *testing.T) {
	pc, err := PortConfig(types.ServicePortConfig{Target: 80, Published: "8080"})
	if err != nil || pc != (swarm.PortConfig{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: "ingress"}) {
		t.Errorf("PortConfig = %+v, %v", pc, err)
	}
	_, err = PortConfig(types.ServicePortConfig{Target: 80, Mode: "mesh"})
	if fe := FieldErrors(err); len(fe) != 1 || fe[0].Field != "mode" {
		t.Errorf("PortConfig errors %v; want one for mode", err)
	}
}
