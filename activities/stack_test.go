package activities

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/clusterflow/clusterflow/internal/workerfs"
	"github.com/clusterflow/clusterflow/playbooks"
)

// TestSpecDifferences: what the engine fills in itself (vip, default isolation,
// update config defaults, the restart delay, one replica) is no difference; a
// changed image or env is, named.
func TestSpecDifferences(t *testing.T) {
	one, five := uint64(1), 5*time.Second
	want := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "demo_web", Labels: map[string]string{"com.docker.stack.namespace": "demo"}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: "web:1", Env: []string{"A=1"}, Privileges: &swarm.Privileges{}},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionOnFailure},
			Resources:     &swarm.ResourceRequirements{},
		},
		Mode:           swarm.ServiceMode{Replicated: &swarm.ReplicatedService{}},
		UpdateConfig:   &swarm.UpdateConfig{Parallelism: 1, FailureAction: "rollback"},
		RollbackConfig: &swarm.UpdateConfig{},
		EndpointSpec:   &swarm.EndpointSpec{Ports: []swarm.PortConfig{}},
	}
	zero := uint64(0)
	engine := swarm.ServiceSpec{
		Annotations: want.Annotations,
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: "web:1", Env: []string{"A=1"}, Isolation: "default"},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionOnFailure, Delay: &five, MaxAttempts: &zero},
			Runtime:       "container",
		},
		Mode:           swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		UpdateConfig:   &swarm.UpdateConfig{Parallelism: 1, FailureAction: "rollback", Monitor: five, Order: "stop-first"},
		RollbackConfig: &swarm.UpdateConfig{FailureAction: "pause", Monitor: five, Order: "stop-first"},
		EndpointSpec:   &swarm.EndpointSpec{Mode: "vip"},
	}
	if d := specDifferences(engine, withSpecDefaults(want)); len(d) != 0 {
		t.Errorf("the engine's own defaults differ: %v", d)
	}
	changed := withSpecDefaults(want)
	cs := *changed.TaskTemplate.ContainerSpec
	cs.Image, cs.Env = "web:2", []string{"A=2"}
	changed.TaskTemplate.ContainerSpec = &cs
	if d := specDifferences(engine, changed); !slices.Equal(d, []string{"env", "image"}) {
		t.Errorf("differences %v", d)
	}
	// The spec sent is not changed by the defaults.
	if want.Mode.Replicated.Replicas != nil || want.UpdateConfig.Monitor != 0 {
		t.Error("withSpecDefaults changed its argument")
	}
}

// TestJudgeRunsOnce: a job counts as done once its tasks completed; a failed task
// of a restart-none service is an outcome, not a hang.
func TestJudgeRunsOnce(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)
	job := ServiceApplied{Changed: true, Created: true, Mode: playbooks.ModeReplicatedJob, RunsOnce: true, Monitor: playbooks.Duration(time.Second)}
	if st := judge(ServiceStatus{Replicas: 2, Completed: 1, Running: 1}, ServiceStatus{}, job, now); st.Outcome != "" {
		t.Errorf("half done: %+v", st)
	}
	done := judge(ServiceStatus{Replicas: 2, Completed: 2}, ServiceStatus{ConvergedAt: now.Add(-2 * time.Second)}, job, now)
	if done.Outcome != ServiceCompleted {
		t.Errorf("done: %+v", done)
	}
	once := ServiceApplied{Changed: true, RunsOnce: true, Monitor: playbooks.Duration(time.Second)}
	failed := judge(ServiceStatus{Replicas: 2, Completed: 1, Failed: 1, TaskError: "task x on slave01: non-zero exit (1)"}, ServiceStatus{}, once, now)
	if failed.Outcome != ServiceTaskFailed || !strings.Contains(failed.Message, "non-zero exit") {
		t.Errorf("failed: %+v", failed)
	}
	// a restart-none service whose tasks still run is converged too
	if st := judge(ServiceStatus{Replicas: 2, Running: 1, Completed: 1}, ServiceStatus{ConvergedAt: now.Add(-2 * time.Second)}, once, now); st.Outcome != ServiceCompleted {
		t.Errorf("restart none, running and completed: %+v", st)
	}
}

// TestBuildContext: the context's tar and digest do not depend on file times or
// the walk's order, change with a file's content, a mode, the Dockerfile's name or
// a build argument, and a symbolic link that leads out is sent as a link, never
// followed.
func TestBuildContext(t *testing.T) {
	root := t.TempDir()
	ctx := filepath.Join(root, "images", "web")
	write := func(name, text string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(ctx, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("Dockerfile", "FROM scratch\nCOPY . /\n", 0o644)
	write("srv/index.html", "hello", 0o644)
	if err := os.Symlink("/etc/passwd", filepath.Join(ctx, "passwd")); err != nil {
		t.Fatal(err)
	}
	d, err := openPlaybookDir(workerfs.Unrestricted(), root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	digest := func(settings ...string) string {
		t.Helper()
		entries, err := d.contextFiles("images/web")
		if err != nil {
			t.Fatal(err)
		}
		s, err := d.contextDigest("images/web", entries, settings)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := digest("dockerfile=Dockerfile")
	if err := os.Chtimes(filepath.Join(ctx, "srv/index.html"), time.Now(), time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if again := digest("dockerfile=Dockerfile"); again != first {
		t.Errorf("a new mtime changes the digest")
	}
	if other := digest("dockerfile=Dockerfile", "arg:V=2"); other == first {
		t.Errorf("a build argument does not change the digest")
	}
	write("srv/index.html", "hello!", 0o644)
	second := digest("dockerfile=Dockerfile")
	if second == first {
		t.Errorf("a new content does not change the digest")
	}
	write("srv/index.html", "hello!", 0o600)
	if err := os.Chmod(filepath.Join(ctx, "srv/index.html"), 0o600); err != nil {
		t.Fatal(err)
	}
	if digest("dockerfile=Dockerfile") == second {
		t.Errorf("a new mode does not change the digest")
	}
	entries, _ := d.contextFiles("images/web")
	i := slices.IndexFunc(entries, func(e contextEntry) bool { return e.name == "passwd" })
	if i < 0 || entries[i].link != "/etc/passwd" || entries[i].size != 0 {
		t.Errorf("the symbolic link: %+v", entries)
	}
	// A context that is itself a link out of the directory is refused.
	if err := os.Symlink("/etc", filepath.Join(root, "images", "etc")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.contextFiles("images/etc"); err == nil {
		t.Error("a context outside the playbook's directory was read")
	}
}

// TestRegistryAuth: the password comes from the worker's environment or a file in
// the playbook's directory, goes into the header only, and no error quotes it.
func TestRegistryAuth(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "registry.pw"), []byte("file-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Swarm{env: func(k string) (string, bool) { return map[string]string{"REG_PW": "env-secret"}[k], k == "REG_PW" }}
	for _, c := range []struct {
		auth playbooks.RegistryAuth
		want string
	}{
		{playbooks.RegistryAuth{Server: "reg.test:5000", Username: "deploy", PasswordEnv: "REG_PW"}, "env-secret"},
		{playbooks.RegistryAuth{Server: "reg.test:5000", Username: "deploy", PasswordFile: "registry.pw"}, "file-secret"},
	} {
		enc, err := s.encodedAuth(root, &c.auth)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.URLEncoding.DecodeString(enc)
		if err != nil || !strings.Contains(string(raw), `"password":"`+c.want+`"`) || !strings.Contains(string(raw), `"serveraddress":"reg.test:5000"`) {
			t.Errorf("header %s (%v)", raw, err)
		}
	}
	for _, a := range []playbooks.RegistryAuth{
		{Server: "reg.test", Username: "u", PasswordEnv: "UNSET"},
		{Server: "reg.test", Username: "u", PasswordFile: "missing.pw"},
		{Server: "reg.test", Username: "u", PasswordFile: "../registry.pw"},
	} {
		if _, err := s.encodedAuth(root, &a); err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("%+v: %v", a, err)
		}
	}
}
