package compose

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"
)

func loadValid(t *testing.T, o LoadOptions) *Stack {
	t.Helper()
	if o.Root == "" {
		o.Root = "testdata/valid"
	}
	if o.Stack == "" {
		o.Stack = "st"
	}
	st, err := Load(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func service(t *testing.T, st *Stack, key string) swarm.ServiceSpec {
	t.Helper()
	for _, s := range st.Services {
		if s.Key == key {
			return s.Spec
		}
	}
	t.Fatalf("no service %s in %v", key, st.Services)
	return swarm.ServiceSpec{}
}

// TestLoadStack loads two files merged in order, with an include (and its
// env_file), an extends of another file, env and label files, a YAML merge key,
// interpolation with defaults, secrets from a file and from the environment.
func TestLoadStack(t *testing.T) {
	t.Setenv("TAG", "from-the-worker") // never read: only Vars are
	st := loadValid(t, LoadOptions{Files: []string{"stack/compose.yaml", "stack/override.yaml"},
		Vars: map[string]string{"TAG": "2", "LOG_LEVEL": "debug"}})
	if want := []string{"stack/compose.yaml", "stack/parts/db.yaml", "stack/parts/base.yaml", "stack/override.yaml"}; !sameSet(st.Files, want) {
		t.Errorf("Files = %v; want %v", st.Files, want)
	}
	web := service(t, st, "web")
	c := web.TaskTemplate.ContainerSpec
	if c.Image != "web:2" || web.Labels[LabelImage] != "web:2" {
		t.Errorf("image %q, label %q; want web:2", c.Image, web.Labels[LabelImage])
	}
	if want := []string{"serve", "--port", "8080"}; !reflect.DeepEqual(c.Args, want) {
		t.Errorf("Args = %v; want %v", c.Args, want)
	}
	if want := []string{"APP_MODE=production", "EXTRA=yes", "FROM_FILE=1", "LOG=debug"}; !reflect.DeepEqual(c.Env, want) {
		t.Errorf("Env = %v; want %v (env_file, the override, interpolation)", c.Env, want)
	}
	if c.Labels["team"] != "platform" || c.Labels["tier"] != "app" || c.Labels[LabelNamespace] != "st" {
		t.Errorf("container labels %v; want label_file, the merge key's and the namespace", c.Labels)
	}
	if r := web.Mode.Replicated; r == nil || r.Replicas == nil || *r.Replicas != 4 {
		t.Errorf("Mode = %+v; want 4 replicas from override.yaml", web.Mode)
	}
	if rp := web.TaskTemplate.RestartPolicy; rp == nil || rp.Condition != swarm.RestartPolicyConditionOnFailure || rp.MaxAttempts == nil || *rp.MaxAttempts != 5 {
		t.Errorf("RestartPolicy = %+v; want on-failure, 5 attempts (restart: on-failure:5 from the merge key)", rp)
	}
	wantPorts := []swarm.PortConfig{
		{Protocol: "tcp", TargetPort: 8080, PublishedPort: 80, PublishMode: swarm.PortConfigPublishModeIngress},
		{Protocol: "tcp", TargetPort: 9100, PublishedPort: 9100, PublishMode: swarm.PortConfigPublishModeHost},
	}
	if !reflect.DeepEqual(web.EndpointSpec.Ports, wantPorts) {
		t.Errorf("Ports = %+v; want %+v", web.EndpointSpec.Ports, wantPorts)
	}
	if len(c.Secrets) != 1 || c.Secrets[0].SecretName != "st_api_key" || c.Secrets[0].File.Name != "api_key" {
		t.Errorf("Secrets = %+v", c.Secrets)
	}
	if len(c.Configs) != 1 || c.Configs[0].ConfigName != "st_nginx_conf" || c.Configs[0].File.Name != "/etc/nginx/conf.d/default.conf" {
		t.Errorf("Configs = %+v", c.Configs)
	}
	var targets []string
	for _, n := range web.TaskTemplate.Networks {
		targets = append(targets, n.Target)
	}
	if want := []string{"st_back", "st_front"}; !reflect.DeepEqual(targets, want) {
		t.Errorf("networks %v; want %v", targets, want)
	}

	db := service(t, st, "db")
	if img := db.TaskTemplate.ContainerSpec.Image; img != "db:5" {
		t.Errorf("db image %q; want db:5 from the include's env_file", img)
	}
	if m := db.TaskTemplate.ContainerSpec.Mounts; len(m) != 1 || m[0].Source != "st_data" || m[0].VolumeOptions.DriverConfig == nil {
		t.Errorf("db mounts %+v", m)
	}
	worker := service(t, st, "worker")
	if w := worker.TaskTemplate.ContainerSpec; w.Image != "tools:1" || !slices.Equal(w.Args, []string{"migrate"}) || !slices.Equal(w.Env, []string{"JOB=1"}) {
		t.Errorf("worker %+v; want extends' image, command and env_file (relative to the extended file)", w)
	}
	if j := worker.Mode.ReplicatedJob; j == nil || *j.TotalCompletions != 2 {
		t.Errorf("worker mode %+v", worker.Mode)
	}

	wantSecrets := []Object{
		{Key: "api_key", Name: "st_api_key", Labels: map[string]string{LabelNamespace: "st"}, Source: Source{File: "stack/parts/api_key.txt"}},
		{Key: "token", Name: "st_token", Labels: map[string]string{LabelNamespace: "st"}, Source: Source{Env: "APP_TOKEN"}},
	}
	if !reflect.DeepEqual(st.Secrets, wantSecrets) {
		t.Errorf("Secrets = %+v; want %+v", st.Secrets, wantSecrets)
	}
	if len(st.Configs) != 1 || st.Configs[0].Source.File != "stack/nginx.conf" {
		t.Errorf("Configs = %+v", st.Configs)
	}
	var nets []string
	for _, n := range st.Networks {
		nets = append(nets, n.Name)
		if n.Create.Driver != "overlay" || n.Create.Labels[LabelNamespace] != "st" {
			t.Errorf("network %s: %+v", n.Name, n.Create)
		}
	}
	if want := []string{"st_back", "st_default", "st_front"}; !reflect.DeepEqual(nets, want) {
		t.Errorf("networks %v; want %v (worker is on the default network)", nets, want)
	}
	out, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "example-api-key") {
		t.Error("the stack holds a secret's content")
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestNoDotEnv: a .env beside the Compose file is not read (docker compose reads
// it for interpolation; clusterflow reads only the variables given).
func TestNoDotEnv(t *testing.T) {
	st := loadValid(t, LoadOptions{Files: []string{"dotenv/compose.yaml"}})
	if img := service(t, st, "web").TaskTemplate.ContainerSpec.Image; img != "web:default" {
		t.Errorf("image %q; want web:default", img)
	}
}

// TestWorkerEnvironmentNotRead: a variable of the worker's environment does not
// interpolate.
func TestWorkerEnvironmentNotRead(t *testing.T) {
	t.Setenv("TAG", "from-the-worker")
	_, err := Load(context.Background(), LoadOptions{Root: "testdata/valid", Files: []string{"stack/compose.yaml"}, Stack: "st"})
	var list ErrorList
	if !errors.As(err, &list) || !strings.Contains(err.Error(), "stack/compose.yaml:15:12: services.web.image: variable TAG is not set") {
		t.Errorf("Load = %v; want TAG unset at its line", err)
	}
}

// TestDemoStack loads the lab's example stack in playbooks/stacks/demo: a web
// service published through the routing mesh, a global service, a service with
// a secret and a config.
func TestDemoStack(t *testing.T) {
	st := loadValid(t, LoadOptions{Root: "../../playbooks", Files: []string{"stacks/demo/compose.yaml"}, Stack: "demo"})
	web := service(t, st, "web")
	if p := web.EndpointSpec.Ports; len(p) != 1 || p[0].PublishMode != swarm.PortConfigPublishModeIngress || p[0].PublishedPort != 8088 {
		t.Errorf("web ports %+v; want 8088 in ingress mode", p)
	}
	if r := web.Mode.Replicated; r == nil || *r.Replicas != 3 {
		t.Errorf("web mode %+v", web.Mode)
	}
	agent := service(t, st, "agent")
	if agent.Mode.Global == nil || agent.EndpointSpec.Ports[0].PublishMode != swarm.PortConfigPublishModeHost {
		t.Errorf("agent %+v %+v; want global, host port", agent.Mode, agent.EndpointSpec)
	}
	db := service(t, st, "db").TaskTemplate.ContainerSpec
	if len(db.Secrets) != 1 || db.Secrets[0].File.Mode != 0o400 || len(db.Configs) != 1 {
		t.Errorf("db secrets %+v configs %+v", db.Secrets, db.Configs)
	}
	if st.Secrets[0].Source != (Source{Env: "DEMO_DB_PASSWORD"}) || st.Configs[0].Source != (Source{File: "stacks/demo/db.conf"}) {
		t.Errorf("sources %+v %+v", st.Secrets, st.Configs)
	}
	for _, n := range st.Networks {
		if n.Key == "front" && n.Create.Options["encrypted"] != "" {
			t.Errorf("front %+v", n.Create)
		}
	}
}

func TestLoadOptions(t *testing.T) {
	for _, o := range []LoadOptions{
		{Root: "testdata/valid", Files: []string{"dotenv/compose.yaml"}, Stack: "Bad Name"},
		{Root: "testdata/valid", Stack: "st"},
		{Root: "testdata/valid", Files: []string{"dotenv/.env"}, Stack: "st"},
		{Root: "testdata/valid", Files: []string{"../invalid/build.yaml"}, Stack: "st"},
		{Root: "testdata/no-such-dir", Files: []string{"a.yaml"}, Stack: "st"},
	} {
		if _, err := Load(context.Background(), o); err == nil {
			t.Errorf("Load(%+v) accepted it", o)
		}
	}
}

// TestExtendsCycle: services that extend each other, in one file or across
// two, end in an error, not a loop.
func TestExtendsCycle(t *testing.T) {
	root := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("same.yaml", "services:\n  a:\n    image: x\n    extends: b\n  b:\n    image: x\n    extends: a\n")
	write("one.yaml", "services:\n  a:\n    image: x\n    extends: {file: two.yaml, service: b}\n")
	write("two.yaml", "services:\n  b:\n    image: x\n    extends: {file: one.yaml, service: a}\n")
	for _, f := range []string{"same.yaml", "one.yaml"} {
		_, err := Load(context.Background(), LoadOptions{Root: root, Files: []string{f}, Stack: "st"})
		var list ErrorList
		if !errors.As(err, &list) || !strings.Contains(err.Error(), "Circular reference") {
			t.Errorf("%s: Load = %v; want a circular reference", f, err)
		}
	}
}
