package activities

import (
	"archive/tar"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/clusterflow/clusterflow/internal/compose"
	"github.com/clusterflow/clusterflow/playbooks"
)

// fullSpec is what ApplyService builds from a step: compose.ServiceSpec, with the
// networks resolved as the engine names them.
func fullSpec(t *testing.T, want playbooks.ServiceStep, netIDs map[string]string) swarm.ServiceSpec {
	t.Helper()
	svc, refs := want.ComposeService()
	full, err := compose.ServiceSpec("", svc, refs)
	if err != nil && want.Image != "" {
		t.Fatal(err)
	}
	for i, n := range full.TaskTemplate.Networks {
		full.TaskTemplate.Networks[i].Target = netIDs[n.Target]
	}
	return full
}

func TestServiceSpecAndDiff(t *testing.T) {
	three := uint64(3)
	want := playbooks.ServiceStep{Service: "web", Image: "web:2", Replicas: &three, Env: map[string]string{"B": "2", "A": "1"},
		Ports:    []playbooks.ServicePort{{Published: 8080, Target: 80, Protocol: "tcp"}, {Published: 9100, Target: 9100, Protocol: "tcp", Mode: playbooks.PortHost}},
		Networks: []string{"backend"},
		Update:   &playbooks.UpdatePolicy{Parallelism: 1, Monitor: playbooks.Duration(5 * time.Second), FailureAction: "rollback", Order: "start-first"}}
	ids := map[string]string{"backend": "net123"}
	one := uint64(1)
	cur := swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: "web", Labels: map[string]string{"keep": "me"}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "web:1", Env: []string{"A=1"}, Args: []string{"-v"}}},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
	}
	spec, err := serviceSpec(cur, want, fullSpec(t, want, ids))
	if err != nil {
		t.Fatal(err)
	}
	if cur.TaskTemplate.ContainerSpec.Image != "web:1" || *cur.Mode.Replicated.Replicas != 1 {
		t.Fatal("serviceSpec changed the current spec")
	}
	cs := spec.TaskTemplate.ContainerSpec
	ports := spec.EndpointSpec.Ports
	if cs.Image != "web:2" || !slices.Equal(cs.Env, []string{"A=1", "B=2"}) || !slices.Equal(cs.Args, []string{"-v"}) ||
		spec.Labels["keep"] != "me" || *spec.Mode.Replicated.Replicas != 3 ||
		spec.TaskTemplate.Networks[0].Target != "net123" || len(ports) != 2 ||
		ports[0].PublishMode != swarm.PortConfigPublishModeIngress || ports[1].PublishMode != swarm.PortConfigPublishModeHost ||
		spec.UpdateConfig.FailureAction != "rollback" || spec.UpdateConfig.Order != "start-first" {
		t.Fatalf("spec %+v", spec)
	}
	diff := specDiff(cur, spec)
	if !slices.Equal(diff, []string{"image", "replicas", "env", "networks", "ports", "updateConfig"}) {
		t.Errorf("diff %v", diff)
	}
	// Applying the same step to the result changes nothing; nil and empty are alike.
	again, _ := serviceSpec(spec, want, fullSpec(t, want, ids))
	if d := specDiff(spec, again); len(d) != 0 {
		t.Errorf("second application differs in %v", d)
	}
	empty := spec
	empty.TaskTemplate.Placement = &swarm.Placement{}
	if d := specDiff(spec, empty); len(d) != 0 {
		t.Errorf("empty placement differs in %v", d)
	}
	// A step without fields leaves the service as it is.
	bare := playbooks.ServiceStep{Service: "web"}
	same, _ := serviceSpec(spec, bare, fullSpec(t, bare, nil))
	if d := specDiff(spec, same); len(d) != 0 {
		t.Errorf("a bare step changes %v", d)
	}
	// The whole spec: mode, command, resources, restart policy, secrets.
	global := playbooks.ServiceStep{Service: "agent", Image: "agent:1", Mode: playbooks.ModeGlobal, Command: []string{"--fast"},
		Resources:     &playbooks.ServiceResources{Limits: &playbooks.ResourceValues{CPUs: "0.5", MemoryBytes: 64 << 20}},
		RestartPolicy: &playbooks.RestartPolicy{Condition: playbooks.RestartNone},
		Secrets:       []playbooks.ObjectRef{{Source: "pw", Target: "/run/pw", Mode: 0o400}}}
	full := fullSpec(t, global, nil)
	full.TaskTemplate.ContainerSpec.Secrets[0].SecretID = "sec1"
	g, err := serviceSpec(spec, global, full)
	if err != nil {
		t.Fatal(err)
	}
	if g.Mode.Global == nil || g.Mode.Replicated != nil || g.TaskTemplate.Resources.Limits.NanoCPUs != 5e8 ||
		g.TaskTemplate.RestartPolicy.Condition != "none" || g.TaskTemplate.ContainerSpec.Secrets[0].File.Mode != 0o400 {
		t.Fatalf("global spec %+v", g)
	}
	if d := specDiff(spec, g); !slices.Equal(d, []string{"image", "mode", "replicas", "command", "secrets", "resources", "restartPolicy"}) {
		t.Errorf("diff to global %v", d)
	}
	if a := appliedOf(g, ServiceApplied{}); a.Mode != playbooks.ModeGlobal || !a.RunsOnce {
		t.Errorf("applied of a global restart-none service: %+v", a)
	}
}

func TestJudge(t *testing.T) {
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	after, before := since.Add(time.Second), since.Add(-time.Minute)
	now := since.Add(time.Minute)
	updated := ServiceApplied{Changed: true, Since: since, Monitor: playbooks.Duration(5 * time.Second)}
	unchanged := ServiceApplied{Monitor: playbooks.Duration(5 * time.Second)}
	reason := "update rolled back due to failure or early termination of task x"
	for _, c := range []struct {
		name       string
		st, last   ServiceStatus
		applied    ServiceApplied
		outcome    string
		wantReason string
	}{
		{"updating", ServiceStatus{UpdateState: "updating", ConvergedAt: after, Replicas: 3, Running: 1}, ServiceStatus{}, updated, "", ""},
		{"completed", ServiceStatus{UpdateState: "completed", ConvergedAt: after, Replicas: 3, Running: 3}, ServiceStatus{}, updated, ServiceCompleted, ""},
		{"stale completed, not converged", ServiceStatus{UpdateState: "completed", ConvergedAt: before, Replicas: 3, Running: 0}, ServiceStatus{}, updated, "", ""},
		{"stale rollback ignored", ServiceStatus{UpdateState: "rollback_completed", ConvergedAt: before, Replicas: 3, Running: 0}, ServiceStatus{}, updated, "", ""},
		{"no status, converged not yet stable", ServiceStatus{Replicas: 3, Running: 3}, ServiceStatus{}, updated, "", ""},
		{"no status, stable", ServiceStatus{Replicas: 3, Running: 3}, ServiceStatus{ConvergedAt: now.Add(-6 * time.Second)}, updated, ServiceCompleted, ""},
		{"rollback started", ServiceStatus{UpdateState: "rollback_started", Message: reason, ConvergedAt: after, Replicas: 3, Running: 2}, ServiceStatus{}, updated, "", reason},
		{"rolled back", ServiceStatus{UpdateState: "rollback_completed", Message: "rollback completed", ConvergedAt: after, Replicas: 3, Running: 3},
			ServiceStatus{RollbackReason: reason}, updated, ServiceRolledBack, reason},
		{"rolled back unseen start", ServiceStatus{UpdateState: "rollback_completed", Message: "rollback completed", ConvergedAt: after, Replicas: 3, Running: 3, TaskError: "task x on a: task: non-zero exit (1)"},
			ServiceStatus{}, updated, ServiceRolledBack, "the update failed (task x on a: task: non-zero exit (1))"},
		{"rolled back, old tasks not back yet", ServiceStatus{UpdateState: "rollback_completed", ConvergedAt: after, Replicas: 3, Running: 2},
			ServiceStatus{RollbackReason: reason}, updated, "", reason},
		{"rolled back, old tasks never back", ServiceStatus{UpdateState: "rollback_completed", ConvergedAt: after, Replicas: 3, Running: 2},
			ServiceStatus{RollbackReason: reason, RolledBackAt: now.Add(-2 * time.Minute)}, updated, ServiceRolledBack, reason},
		{"rollback started, task error added", ServiceStatus{UpdateState: "rollback_started", Message: reason, ConvergedAt: after, Replicas: 3, Running: 2, TaskError: "task x on a: boom"},
			ServiceStatus{}, updated, "", reason + " (task x on a: boom)"},
		{"paused", ServiceStatus{UpdateState: "paused", Message: "update paused", ConvergedAt: after, Replicas: 3, Running: 2}, ServiceStatus{}, updated, ServicePaused, ""},
		{"unchanged", ServiceStatus{Replicas: 3, Running: 3}, ServiceStatus{}, unchanged, ServiceUnchanged, ""},
		{"unchanged after an old rollback", ServiceStatus{UpdateState: "rollback_completed", ConvergedAt: before, Replicas: 3, Running: 3}, ServiceStatus{}, unchanged, ServiceUnchanged, ""},
		{"unchanged, an update completed but its tasks not running yet", ServiceStatus{UpdateState: "completed", ConvergedAt: before, Replicas: 3, Running: 1}, ServiceStatus{}, unchanged, "", ""},
		{"unchanged, an update completed and its tasks run", ServiceStatus{UpdateState: "completed", ConvergedAt: before, Replicas: 3, Running: 3}, ServiceStatus{}, unchanged, ServiceUnchanged, ""},
		{"unchanged, update running", ServiceStatus{UpdateState: "updating", ConvergedAt: before, Replicas: 3, Running: 3}, ServiceStatus{}, unchanged, "", ""},
	} {
		got := judge(c.st, c.last, c.applied, now)
		if got.Outcome != c.outcome || got.RollbackReason != c.wantReason {
			t.Errorf("%s: outcome %q reason %q, want %q %q", c.name, got.Outcome, got.RollbackReason, c.outcome, c.wantReason)
		}
	}
}

func TestTarballImageID(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, files map[string]string) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		tw := tar.NewWriter(f)
		for _, n := range slices.Sorted(maps.Keys(files)) {
			if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
				t.Fatal(err)
			}
			_, _ = tw.Write([]byte(files[n]))
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		return p
	}
	hex := strings.Repeat("ab", 32)
	legacy := write("legacy.tar", map[string]string{"manifest.json": `[{"Config":"` + hex + `.json","RepoTags":["web:2"],"Layers":[]}]`})
	oci := write("oci.tar", map[string]string{"manifest.json": `[{"Config":"blobs/sha256/` + hex + `","RepoTags":["web:2"],"Layers":[]}]`})
	for _, p := range []string{legacy, oci} {
		if id, err := tarballImageID(p, "web:2"); err != nil || id != "sha256:"+hex {
			t.Errorf("%s: %q, %v", p, id, err)
		}
	}
	if _, err := tarballImageID(legacy, "web:3"); err == nil || !strings.Contains(err.Error(), "holds web:2, not web:3") {
		t.Errorf("another tag: %v", err)
	}
	if _, err := tarballImageID(write("empty.tar", map[string]string{"x": "y"}), "web:2"); err == nil || !strings.Contains(err.Error(), "no manifest.json") {
		t.Errorf("no manifest: %v", err)
	}
}
