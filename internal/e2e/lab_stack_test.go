//go:build lab

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clusterflow/clusterflow/workflows"
)

// TestStackLab deploys the shipped example stack (playbooks/stacks/demo: a
// replicated web service published through the routing mesh, a global agent
// published in host mode, a db service with a secret, a config and a volume) on a
// 3-node swarm, with its image built on the cluster, as a user would (starter
// run, worker processes, the embedded Temporal server):
//
//   - buildImage builds clusterflow/web:1 and :2 on master from
//     playbooks/images/web (no registry) and loads them into the other nodes;
//     the same step again builds and loads nothing;
//   - deployStack creates the stack (`docker stack ps demo` shows it; web's ports
//     are ingress in the engine's spec, agent answers on every node, db reads
//     its secret); the same step again sends nothing (every service's version is
//     unchanged);
//   - an update of web's image only (a second Compose file) updates web alone;
//     the worker is SIGKILLed while the services converge and a new worker
//     finishes the step: ApplyStackService ran once per service, and web's
//     PreviousSpec is its spec from before the step (it was updated once);
//   - a failing update (web's command exits, agent's env changes) with
//     rollbackOnFailure: the step fails and every service's spec is what it was;
//   - a new secret content (a new worker environment) is rotated: a new secret,
//     db moved to it, the old one removed;
//   - removeStack and removeVolume leave nothing labelled with the stack; again:
//     unchanged;
//   - no history holds the secrets' contents or the registry password.
//
// Run: go test -tags lab -count=1 -run StackLab -v ./internal/e2e/
func TestStackLab(t *testing.T) {
	c := newCluster(t, 0)
	inv := c.labUp(3, true)
	secrets := map[string]string{"db password (first)": randomText(t), "db password (second)": randomText(t), "registry password": randomText(t)}
	env := func(pw string) []string {
		return []string{"DEMO_DB_PASSWORD=" + pw, "CF_TEST_REGISTRY_PASSWORD=" + secrets["registry password"]}
	}
	w := c.startWorkerEnv(env(secrets["db password (first)"]))
	nodes := []string{"master", "slave01", "slave02"}
	for _, n := range nodes {
		nodeSh(t, n, "true")
	}
	c.formSwarm(t, inv, w)
	copyDir(t, filepath.Join("..", "..", "playbooks", "stacks"), filepath.Join(c.dir, "stacks"))
	copyDir(t, filepath.Join("..", "..", "playbooks", "images"), filepath.Join(c.dir, "images"))
	writeText(t, filepath.Join(c.dir, "stacks", "web2.yaml"), "services:\n  web:\n    image: clusterflow/web:2\n")
	writeText(t, filepath.Join(c.dir, "stacks", "fail.yaml"), `services:
  web:
    image: clusterflow/web:2
    command: [/usr/bin/perl, -e, "exit 3"]
  agent:
    environment:
      VERSION: "3"
`)
	timings := map[string]time.Duration{}

	t.Run("buildImage", func(t *testing.T) {
		pb := c.labPlaybook("images", inv, fmt.Sprintf(`    - name: base image
      kind: run
      hosts: [master]
      unless: [docker, image, inspect, clusterflow/base:1]
      command: [sh, -c, %q]
    - name: web 1
      kind: buildImage
      hosts: all
      builder: master
      context: images/web
      tag: clusterflow/web:1
      registryAuth: {server: registry.lab.invalid, username: deploy, passwordEnv: CF_TEST_REGISTRY_PASSWORD}
    - name: web 2
      kind: buildImage
      hosts: all
      context: images/web
      tag: clusterflow/web:2
      args: {VERSION: "2"}
`, baseImageScript(t)))
		took, res := c.runJSON(t, pb)
		timings["build 2 images, load into 2 nodes"] = took
		for _, s := range res.Steps[1:] {
			for _, h := range s.Hosts {
				if h.State != workflows.HostChanged {
					t.Errorf("%s on %s: %s (%s)", s.Name, h.Host, h.State, h.Message)
				}
			}
		}
		ids := map[string]bool{}
		for _, n := range nodes {
			ids[nodeSh(t, n, "docker image inspect clusterflow/web:1 --format '{{.Id}} {{index .Config.Labels \"io.clusterflow.build.context\"}}'")] = true
		}
		if len(ids) != 1 {
			t.Errorf("clusterflow/web:1 differs between the nodes: %v", ids)
		}
		t.Logf("clusterflow/web:1 on all 3 nodes: %v", ids)
		took = c.runUnchanged(t, pb)
		timings["the same builds again (nothing built or loaded)"] = took
		c.record(workflows.WorkflowID("images")+"/2-buildImage", "BuildImage-lab")
	})

	stack := func(name string, files ...string) string {
		list := "[" + strings.Join(files, ", ") + "]"
		return c.labPlaybook(name, inv, fmt.Sprintf(`    - name: demo
      kind: deployStack
      hosts: [master]
      timeout: 4m
      stack: demo
      compose: %s
      prune: true
      rollbackOnFailure: true
`, list))
	}
	base := "stacks/demo/compose.yaml"

	t.Run("deploy", func(t *testing.T) {
		took, res := c.runJSON(t, stack("stack-deploy", base))
		timings["deploy (3 services, 2 networks, a secret, a config)"] = took
		if h := res.Steps[0].Hosts[0]; h.State != workflows.HostChanged || !strings.Contains(h.Message, "web completed (created") {
			t.Fatalf("deploy: %s: %s", h.State, h.Message)
		}
		c.record(workflows.WorkflowID("stack-deploy")+"/1-deployStack", "DeployStack-lab-deploy")
		ps := nodeSh(t, "master", "docker stack ls; docker stack ps demo --format '{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}}' | sort")
		t.Logf("docker stack ls; docker stack ps demo:\n%s", indent(ps))
		if strings.Count(ps, "Running Running") != 7 {
			t.Errorf("want 7 running tasks (web 3, agent 3, db 1)")
		}
		if got := nodeSh(t, "master", "docker service inspect demo_web --format '{{range .Spec.EndpointSpec.Ports}}{{.PublishedPort}}/{{.PublishMode}}{{end}} {{range .Endpoint.Ports}}{{.PublishedPort}}/{{.PublishMode}}{{end}}'"); got != "8088/ingress 8088/ingress" {
			t.Errorf("web's ports (spec, endpoint): %s", got)
		}
		for _, n := range nodes {
			if body := httpGet(t, "http://"+labAddr(t, n)+":9100/"); !strings.Contains(body, "version 1") {
				t.Errorf("agent on %s: %q", n, body)
			}
		}
		if got := dbSecret(t); got != secrets["db password (first)"] {
			t.Errorf("db reads a secret of %d bytes, not the worker's DEMO_DB_PASSWORD", len(got))
		}
	})

	t.Run("unchanged", func(t *testing.T) {
		before := serviceVersions(t)
		took := c.runUnchanged(t, stack("stack-deploy", base))
		timings["the same stack again (nothing sent)"] = took
		if after := serviceVersions(t); !maps.Equal(before, after) {
			t.Errorf("service versions changed: %v -> %v", before, after)
		}
		t.Logf("service versions before and after: %v", before)
	})

	t.Run("update one image, worker killed", func(t *testing.T) {
		before := serviceVersions(t)
		id := workflows.WorkflowID("stack-web2")
		child := id + "/1-deployStack"
		begin := time.Now()
		if out, code := c.starter("run", "--detach", stack("stack-web2", base, "stacks/web2.yaml")); code != 0 {
			t.Fatalf("start: exit %d\n%s", code, out)
		}
		var mid workflows.DeployStackProgress
		waitFor(t, 2*time.Minute, "web's update to run", func() bool {
			return queryInto(c, child, &mid) == nil && mid.Phase == workflows.StackPhaseWatch &&
				slices.ContainsFunc(mid.Services, func(s workflows.StackServiceState) bool {
					return s.Key == "web" && s.Status.UpdateState == "updating"
				})
		})
		b, _ := json.Marshal(mid.Services)
		t.Logf("progress query %s after the start: %s", time.Since(begin).Round(time.Millisecond), b)
		if err := w.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = w.Wait()
		w = c.startWorkerEnv(env(secrets["db password (first)"]))
		if err := c.waitRun(id, 5*time.Minute); err != nil {
			t.Fatalf("run: %v\nworker log:\n%s", err, c.logOf(w))
		}
		timings["update of one image, with a worker SIGKILLed"] = time.Since(begin)
		var res workflows.DeployStackResult
		getResult(t, c, child, &res)
		t.Logf("outcome %s: %s", res.Outcome, res.Message)
		if res.Outcome != "completed" || !strings.Contains(res.Message, "web completed (image") ||
			!strings.Contains(res.Message, "agent unchanged") || !strings.Contains(res.Message, "db unchanged") {
			t.Errorf("outcome %s: %s", res.Outcome, res.Message)
		}
		retried := retriedActivities(t, c, child)
		t.Logf("retried after the kill: %v", retried)
		if !slices.ContainsFunc(retried, func(r string) bool { return strings.HasPrefix(r, "WatchService ") }) {
			t.Errorf("no WatchService attempt after the kill: %v", retried)
		}
		if n := activityAttempts(t, c, child, "ApplyStackService"); n != 1 {
			t.Errorf("ApplyStackService ran %d attempts, want 1", n)
		}
		after := serviceVersions(t)
		if before["demo_agent"] != after["demo_agent"] || before["demo_db"] != after["demo_db"] || before["demo_web"] == after["demo_web"] {
			t.Errorf("versions %v -> %v: want web's alone changed", before, after)
		}
		// Updated once: the engine's previous spec is the one from before the step.
		if got := nodeSh(t, "master", "docker service inspect demo_web --format '{{.PreviousSpec.TaskTemplate.ContainerSpec.Image}} -> {{.Spec.TaskTemplate.ContainerSpec.Image}}'"); got != "clusterflow/web:1 -> clusterflow/web:2" {
			t.Errorf("web previous -> current: %s", got)
		}
		c.record(child, "DeployStack-lab-kill")
	})

	t.Run("failing update rolled back", func(t *testing.T) {
		before := serviceSpecs(t)
		begin := time.Now()
		out, code := c.starter("run", "--output", "json", stack("stack-fail", base, "stacks/fail.yaml"))
		timings["failing update, the stack rolled back"] = time.Since(begin)
		id := workflows.WorkflowID("stack-fail") + "/1-deployStack"
		var res workflows.DeployStackResult
		getResult(t, c, id, &res)
		t.Logf("exit %d, outcome %s: %s", code, res.Outcome, res.Message)
		if code == 0 || res.Outcome != "failed" || !res.RolledBack || !strings.Contains(res.Message, "service web: rolled back: ") ||
			!strings.Contains(res.Message, "agent rolled back") {
			t.Fatalf("exit %d\n%s", code, out)
		}
		after := serviceSpecs(t)
		for name, spec := range before {
			if after[name] != spec {
				t.Errorf("%s's spec after the rollback differs from the one before the step:\n%s\n%s", name, spec, after[name])
			}
		}
		t.Logf("the specs of %d services read back equal to those before the step", len(before))
		c.record(id, "DeployStack-lab-rollback")
	})

	t.Run("secret rotated", func(t *testing.T) {
		old := nodeSh(t, "master", "docker secret ls --format '{{.Name}}'")
		if err := w.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		_ = w.Wait()
		w = c.startWorkerEnv(env(secrets["db password (second)"]))
		took, res := c.runJSON(t, stack("stack-web2", base, "stacks/web2.yaml"))
		timings["secret rotated, db converged, old secret removed"] = took
		h := res.Steps[0].Hosts[0]
		t.Logf("%s: %s", h.State, h.Message)
		now := nodeSh(t, "master", "docker secret ls --format '{{.Name}}'")
		if h.State != workflows.HostChanged || !strings.Contains(h.Message, "db completed (secrets") || !strings.Contains(h.Message, "removed secret "+old) ||
			now == old || !strings.HasPrefix(now, "demo_db_password-") || strings.Contains(now, "\n") {
			t.Errorf("secrets %q -> %q", old, now)
		}
		if got := dbSecret(t); got != secrets["db password (second)"] {
			t.Errorf("db reads a secret of %d bytes, not the new content", len(got))
		}
	})

	t.Run("jobs and restart none", func(t *testing.T) {
		once := func(name, extra string) string {
			return fmt.Sprintf(`    - name: %s
      kind: deployService
      hosts: [master]
      timeout: 2m
      service: %s
      image: clusterflow/web:1
      command: [/usr/bin/perl, -e, "exit 0"]
%s`, name, name, extra)
		}
		pb := c.labPlaybook("jobs", inv, once("gjob", "      mode: global-job\n")+once("rjob", "      mode: replicated-job\n      replicas: 2\n")+
			once("once", "      replicas: 2\n      restartPolicy: {condition: none}\n"))
		took, res := c.runJSON(t, pb)
		timings["a global job, a replicated job, a restart-none service"] = took
		for _, s := range res.Steps {
			h := s.Hosts[0]
			t.Logf("%s: %s %s", s.Name, h.State, h.Message)
			if h.State != workflows.HostChanged || !strings.Contains(h.Message, "completed") {
				t.Errorf("%s: %s (%s)", s.Name, h.State, h.Message)
			}
		}
		c.runUnchanged(t, pb)
		rm := c.labPlaybook("jobs-down", inv, `    - {name: gjob, kind: removeService, hosts: [master], service: gjob}
    - {name: rjob, kind: removeService, hosts: [master], service: rjob}
    - {name: once, kind: removeService, hosts: [master], service: once}
`)
		c.runJSON(t, rm)
		c.runUnchanged(t, rm)
		if left := nodeSh(t, "master", "docker service ls -q --filter name=gjob --filter name=rjob --filter name=once"); left != "" {
			t.Errorf("services left: %q", left)
		}
	})

	t.Run("removeStack", func(t *testing.T) {
		pb := c.labPlaybook("stack-down", inv, `    - name: demo
      kind: removeStack
      hosts: [master]
      stack: demo
    - name: data
      kind: removeVolume
      hosts: all
      volume: demo_data
`)
		took, res := c.runJSON(t, pb)
		timings["removeStack and removeVolume"] = took
		for _, s := range res.Steps {
			for _, h := range s.Hosts {
				t.Logf("%s %s: %s %s", s.Name, h.Host, h.State, h.Message)
			}
		}
		left := nodeSh(t, "master", `f=label=com.docker.stack.namespace=demo
docker service ls -q --filter $f; docker network ls -q --filter $f; docker secret ls -q --filter $f; docker config ls -q --filter $f; docker stack ls --format '{{.Name}}'`)
		if left != "" {
			t.Errorf("left with the stack's label: %q", left)
		}
		for _, n := range nodes {
			if v := nodeSh(t, n, "docker volume ls -q --filter name=demo_data; docker ps -aq --filter label=com.docker.stack.namespace=demo"); v != "" {
				t.Errorf("%s still has %q", n, v)
			}
		}
		c.record(workflows.WorkflowID("stack-down")+"/1-removeStack", "Teardown-lab-stack")
		c.runUnchanged(t, pb)
	})

	events := scanHistories(t, c, "", secrets)
	t.Logf("scanned %d events of every run's history for %d secrets: none found", events, len(secrets))
	for _, k := range slices.Sorted(maps.Keys(timings)) {
		t.Logf("timing: %-52s %s", k, timings[k].Round(100*time.Millisecond))
	}
}

// baseImageScript is the command of playbooks/cluster.yaml's base image step.
func baseImageScript(t *testing.T) string {
	t.Helper()
	text := readFile(t, filepath.Join("..", "..", "playbooks", "cluster.yaml"))
	i := strings.Index(text, "tar -C / -ch usr/bin/perl")
	j := strings.Index(text[i:], "clusterflow/base:1")
	if i < 0 || j < 0 {
		t.Fatal("playbooks/cluster.yaml has no base image step")
	}
	return strings.Join(strings.Fields(text[i:i+j+len("clusterflow/base:1")]), " ")
}

// startWorkerEnv starts a worker with extra environment.
func (c *cluster) startWorkerEnv(env []string) *exec.Cmd {
	c.workerNo++
	return c.startEnv(fmt.Sprintf("worker%d", c.workerNo), env, "worker", "--address", c.addr, "--state-dir", filepath.Join(c.dir, "state"))
}

// runJSON runs a playbook with JSON output and returns how long it took and its
// progress; a failed run fails the test.
func (c *cluster) runJSON(t *testing.T, pb string) (time.Duration, workflows.Progress) {
	t.Helper()
	begin := time.Now()
	out, code := c.starter("run", "--output", "json", pb)
	took := time.Since(begin)
	var res struct{ Progress workflows.Progress }
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &res); err != nil || code != 0 {
		t.Fatalf("run %s: exit %d (%v)\n%s", filepath.Base(pb), code, err, out)
	}
	return took, res.Progress
}

// runUnchanged runs a playbook again and fails unless every host of every step
// is unchanged.
func (c *cluster) runUnchanged(t *testing.T, pb string) time.Duration {
	t.Helper()
	took, p := c.runJSON(t, pb)
	for _, s := range p.Steps {
		for _, h := range s.Hosts {
			if h.State != workflows.HostUnchanged {
				t.Errorf("again: %s on %s: %s (%s)", s.Name, h.Host, h.State, h.Message)
			}
		}
	}
	return took
}

// serviceVersions are the engine's version index of each of the stack's services.
func serviceVersions(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(nodeSh(t, "master", "docker service ls -q --filter label=com.docker.stack.namespace=demo | xargs docker service inspect --format '{{.Spec.Name}} {{.Version.Index}}'"), "\n") {
		if name, v, ok := strings.Cut(line, " "); ok {
			out[name] = v
		}
	}
	return out
}

// serviceSpecs are the stack's services' specs as the engine holds them (JSON).
func serviceSpecs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range []string{"demo_web", "demo_agent", "demo_db"} {
		out[name] = nodeSh(t, "master", "docker service inspect "+name+" --format '{{json .Spec}}'")
	}
	return out
}

// dbSecret reads the secret the db task sees, on the node that runs it.
func dbSecret(t *testing.T) string {
	t.Helper()
	var node string
	waitFor(t, time.Minute, "db's task to run the newest spec", func() bool {
		out, err := nodeShErr("master", "docker service ps demo_db --filter desired-state=running --format '{{.Node}} {{.CurrentState}}'")
		if err != nil || !strings.Contains(out, "Running") || strings.Contains(out, "\n") {
			return false
		}
		node = strings.Fields(out)[0]
		return true
	})
	var got string
	waitFor(t, time.Minute, "db's container on "+node, func() bool {
		out, err := nodeShErr(node, `id=$(docker ps -q --filter label=com.docker.swarm.service.name=demo_db | head -n 1); [ -n "$id" ] && docker exec "$id" /usr/bin/perl -e 'open F, "<", "/run/secrets/db_password" or die; print <F>'`)
		got = out
		return err == nil && out != ""
	})
	return got
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	var body string
	waitFor(t, 30*time.Second, "an answer from "+url, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK
	})
	return body
}
