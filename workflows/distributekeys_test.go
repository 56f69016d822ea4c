package workflows

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// These tests check DistributeKeys' logic with faked activities: the order of the
// phases, which keys go where, failures and rotation. The activities themselves are
// tested in the activities package and, on real hosts, by the lab test.

const (
	testClusterKey = "/var/lib/clusterflow/cluster"
	curPub         = "ssh-ed25519 AAAAcurrent clusterflow-cluster-key"
	nextPub        = "ssh-ed25519 AAAAnext clusterflow-cluster-key"
	oldPub         = "ssh-ed25519 AAAAold clusterflow-cluster-key"
)

func nodeKey(host string) string { return "ssh-ed25519 AAAAnode-" + host + " root@" + host }
func hostKey(host string) string { return "ssh-ed25519 AAAAhost-" + host }

func keysInput(mesh bool, hosts ...string) DistributeKeysInput {
	in := DistributeKeysInput{Keys: playbooks.DistributeKeysStep{ClusterKey: testClusterKey, Mesh: mesh}, Parallel: 2}
	for i, h := range hosts {
		in.Hosts = append(in.Hosts, remote.Host{
			Name: h, Address: "10.0.0." + string(rune('1'+i)), Port: 22, User: "root",
			KnownHostsFile: "/etc/clusterflow/known_hosts",
		})
	}
	return in
}

// fakeKeys fakes the key activities and records every call as "Activity host".
type fakeKeys struct {
	mu    sync.Mutex
	calls []string
	// requests, by activity and host
	authorized map[string][]activities.EnsureAuthorizedKeysRequest
	known      map[string]activities.EnsureKnownHostsRequest
	mesh       map[string]activities.VerifyMeshRequest
	operator   []activities.RecordOperatorKnownHostsRequest

	rotate    bool   // EnsureClusterKey reports a next key
	retired   string // EnsureClusterKey reports a retired key
	unchanged bool   // every host activity reports no change
	failHost  string // host whose activities fail ...
	failIn    string // ... in this activity
}

func (f *fakeKeys) record(activity, host string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, activity+" "+host)
}

func (f *fakeKeys) fails(activity, host string) error {
	if host == f.failHost && activity == f.failIn {
		return temporal.NewNonRetryableApplicationError("host "+host+": boom in "+activity, activities.ErrRemoteFailed, nil)
	}
	return nil
}

func (f *fakeKeys) install(env *testsuite.TestWorkflowEnvironment) {
	f.authorized = map[string][]activities.EnsureAuthorizedKeysRequest{}
	f.known = map[string]activities.EnsureKnownHostsRequest{}
	f.mesh = map[string]activities.VerifyMeshRequest{}
	env.OnActivity(keyActs.EnsureClusterKey, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.EnsureClusterKeyRequest) (activities.ClusterKeyInfo, error) {
			f.record("EnsureClusterKey", "")
			info := activities.ClusterKeyInfo{
				Current: activities.KeyInfo{Path: req.ClusterKey, PublicKey: curPub, Fingerprint: "SHA256:current", Generated: !f.unchanged},
				Retired: f.retired,
			}
			if req.Rotate && f.rotate {
				info.Next = &activities.KeyInfo{Path: req.ClusterKey + ".next", PublicKey: nextPub, Fingerprint: "SHA256:next"}
			}
			return info, nil
		})
	env.OnActivity(keyActs.ReadHostKeys, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.ReadHostKeysRequest) (activities.HostKeysResult, error) {
			f.record("ReadHostKeys", req.Host.Name)
			if err := f.fails("ReadHostKeys", req.Host.Name); err != nil {
				return activities.HostKeysResult{}, err
			}
			res := activities.HostKeysResult{HostKeys: []string{hostKey(req.Host.Name)}}
			if req.Mesh {
				res.NodeKey = nodeKey(req.Host.Name)
				res.Changed, res.Note = !f.unchanged, "generated /root/.ssh/id_ed25519"
			}
			return res, nil
		})
	env.OnActivity(keyActs.EnsureAuthorizedKeys, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.EnsureAuthorizedKeysRequest) (activities.FileEditResult, error) {
			f.record("EnsureAuthorizedKeys", req.Host.Name)
			f.mu.Lock()
			f.authorized[req.Host.Name] = append(f.authorized[req.Host.Name], req)
			f.mu.Unlock()
			if err := f.fails("EnsureAuthorizedKeys", req.Host.Name); err != nil {
				return activities.FileEditResult{}, err
			}
			if f.unchanged {
				return activities.FileEditResult{}, nil
			}
			return activities.FileEditResult{Changed: true, Added: len(req.Add), Removed: len(req.Remove)}, nil
		})
	env.OnActivity(keyActs.EnsureKnownHosts, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.EnsureKnownHostsRequest) (activities.FileEditResult, error) {
			f.record("EnsureKnownHosts", req.Host.Name)
			f.mu.Lock()
			f.known[req.Host.Name] = req
			f.mu.Unlock()
			if err := f.fails("EnsureKnownHosts", req.Host.Name); err != nil {
				return activities.FileEditResult{}, err
			}
			if f.unchanged {
				return activities.FileEditResult{}, nil
			}
			return activities.FileEditResult{Changed: true, Added: len(req.Entries)}, nil
		})
	env.OnActivity(keyActs.RecordOperatorKnownHosts, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.RecordOperatorKnownHostsRequest) (activities.RecordOperatorKnownHostsResult, error) {
			f.record("RecordOperatorKnownHosts", "")
			f.mu.Lock()
			f.operator = append(f.operator, req)
			f.mu.Unlock()
			return activities.RecordOperatorKnownHostsResult{}, nil
		})
	env.OnActivity(keyActs.VerifyMesh, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.VerifyMeshRequest) (activities.VerifyMeshResult, error) {
			f.record("VerifyMesh", req.Host.Name)
			f.mu.Lock()
			f.mesh[req.Host.Name] = req
			f.mu.Unlock()
			if err := f.fails("VerifyMesh", req.Host.Name); err != nil {
				return activities.VerifyMeshResult{}, err
			}
			return activities.VerifyMeshResult{Checked: len(req.Targets)}, nil
		})
	env.OnActivity(keyActs.VerifyKeyLogin, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.VerifyKeyLoginRequest) error {
			f.record("VerifyKeyLogin", req.Host.Name)
			if req.IdentityFile != testClusterKey+".next" {
				return errors.New("verified with " + req.IdentityFile)
			}
			return f.fails("VerifyKeyLogin", req.Host.Name)
		})
	env.OnActivity(keyActs.PromoteClusterKey, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.PromoteClusterKeyRequest) (activities.PromoteClusterKeyResult, error) {
			f.record("PromoteClusterKey", "")
			if req.Fingerprint != "SHA256:next" {
				return activities.PromoteClusterKeyResult{}, errors.New("unexpected fingerprint " + req.Fingerprint)
			}
			return activities.PromoteClusterKeyResult{Current: activities.KeyInfo{Path: req.ClusterKey, PublicKey: nextPub, Fingerprint: "SHA256:next"}, Changed: true}, nil
		})
}

// phases reduces the call log to activity names without repeats in a row: the
// order in which the phases ran.
func (f *fakeKeys) phases() []string {
	var out []string
	for _, c := range f.calls {
		name, _, _ := strings.Cut(c, " ")
		if len(out) == 0 || out[len(out)-1] != name {
			out = append(out, name)
		}
	}
	return out
}

func (f *fakeKeys) callsFor(host string) []string {
	var out []string
	for _, c := range f.calls {
		if name, h, _ := strings.Cut(c, " "); h == host {
			out = append(out, name)
		}
	}
	return out
}

func newKeysEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := s.NewTestWorkflowEnvironment()
	Register(env)
	env.RegisterActivity(keyActs)
	return env
}

func runKeys(t *testing.T, f *fakeKeys, in DistributeKeysInput) *DistributeKeysResult {
	t.Helper()
	env := newKeysEnv(t)
	f.install(env)
	env.ExecuteWorkflow(DistributeKeys, in)
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow failed: %v", err)
	}
	var res DistributeKeysResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	return &res
}

func states(res *DistributeKeysResult) string {
	var s []string
	for _, h := range res.Hosts {
		s = append(s, h.Host+"="+h.State)
	}
	return strings.Join(s, " ")
}

func TestDistributeKeysMesh(t *testing.T) {
	f := &fakeKeys{}
	res := runKeys(t, f, keysInput(true, "a", "b", "c"))

	want := []string{"EnsureClusterKey", "ReadHostKeys", "EnsureAuthorizedKeys", "RecordOperatorKnownHosts", "EnsureKnownHosts", "VerifyMesh"}
	if got := f.phases(); !slices.Equal(got, want) {
		t.Fatalf("phases %v, want %v (calls %v)", got, want, f.calls)
	}
	if got := states(res); got != "a=changed b=changed c=changed" {
		t.Fatalf("states %s", got)
	}
	if !res.Mesh || res.ClusterKeyFingerprint != "SHA256:current" || res.Rotated || res.RotationPending {
		t.Fatalf("result %+v", res)
	}
	// Each host trusts the cluster key and the two other hosts' keys, not its own.
	wantAdd := []string{curPub, nodeKey("a"), nodeKey("c")}
	if got := f.authorized["b"][0].Add; !slices.Equal(got, wantAdd) {
		t.Fatalf("b's authorized keys %q, want %q", got, wantAdd)
	}
	// Every known_hosts lists all three hosts; every host logs in to the two others.
	for _, h := range []string{"a", "b", "c"} {
		if n := len(f.known[h].Entries); n != 3 {
			t.Errorf("%s: %d known_hosts entries, want 3", h, n)
		}
		var targets []string
		for _, tg := range f.mesh[h].Targets {
			targets = append(targets, tg.Name)
		}
		if slices.Contains(targets, h) || len(targets) != 2 {
			t.Errorf("%s: mesh targets %v", h, targets)
		}
	}
	if len(f.operator) != 1 || len(f.operator[0].Hosts) != 3 || f.operator[0].Hosts[1].Keys[0] != hostKey("b") {
		t.Fatalf("operator's known_hosts request %+v", f.operator)
	}
	if !strings.Contains(res.Hosts[0].Message, "authorized_keys: 3 added") || !strings.Contains(res.Hosts[0].Message, "mesh: logged in to 2 other hosts") {
		t.Errorf("message %q", res.Hosts[0].Message)
	}
}

func TestDistributeKeysWithoutMesh(t *testing.T) {
	f := &fakeKeys{retired: oldPub}
	res := runKeys(t, f, keysInput(false, "a", "b"))
	want := []string{"EnsureClusterKey", "ReadHostKeys", "EnsureAuthorizedKeys", "RecordOperatorKnownHosts", "EnsureKnownHosts"}
	if got := f.phases(); !slices.Equal(got, want) {
		t.Fatalf("phases %v, want %v", got, want)
	}
	req := f.authorized["a"][0]
	if !slices.Equal(req.Add, []string{curPub}) || !slices.Equal(req.Remove, []string{oldPub}) {
		t.Fatalf("authorized_keys request %+v: want only the cluster key added and the retired one removed", req)
	}
	if res.Mesh {
		t.Fatal("mesh reported without mesh")
	}
}

func TestDistributeKeysRerunUnchanged(t *testing.T) {
	f := &fakeKeys{unchanged: true}
	res := runKeys(t, f, keysInput(true, "a", "b", "c"))
	if got := states(res); got != "a=unchanged b=unchanged c=unchanged" {
		t.Fatalf("states %s", got)
	}
	if !strings.HasPrefix(res.Hosts[1].Message, "up to date") || !res.Mesh {
		t.Fatalf("result %+v", res)
	}
}

func TestDistributeKeysFailedHostLeftOut(t *testing.T) {
	f := &fakeKeys{failHost: "b", failIn: "ReadHostKeys"}
	res := runKeys(t, f, keysInput(true, "a", "b", "c"))
	if got := states(res); got != "a=changed b=failed c=changed" {
		t.Fatalf("states %s", got)
	}
	if msg := res.Hosts[1].Message; !strings.HasPrefix(msg, KeysPhaseHostKeys+": ") || !strings.Contains(msg, "boom") {
		t.Fatalf("b's message %q", msg)
	}
	if got := f.callsFor("b"); !slices.Equal(got, []string{"ReadHostKeys"}) {
		t.Fatalf("b got %v after failing", got)
	}
	// Nobody trusts b's key, lists b's host key, or logs in to b.
	if add := f.authorized["a"][0].Add; slices.Contains(add, nodeKey("b")) || !slices.Contains(add, nodeKey("c")) {
		t.Fatalf("a's keys %q", add)
	}
	if n := len(f.known["c"].Entries); n != 2 {
		t.Fatalf("c's known_hosts has %d entries, want 2", n)
	}
	if tg := f.mesh["a"].Targets; len(tg) != 1 || tg[0].Name != "c" {
		t.Fatalf("a's mesh targets %+v", tg)
	}
	if !res.Mesh {
		t.Fatal("the remaining hosts are meshed")
	}
}

func TestDistributeKeysMeshFailureNamesPair(t *testing.T) {
	f := &fakeKeys{failHost: "c", failIn: "VerifyMesh"}
	res := runKeys(t, f, keysInput(true, "a", "b", "c"))
	if got := states(res); got != "a=changed b=changed c=failed" {
		t.Fatalf("states %s", got)
	}
	if res.Mesh {
		t.Fatal("mesh reported verified after a failed login")
	}
}

func TestDistributeKeysRotation(t *testing.T) {
	f := &fakeKeys{rotate: true}
	in := keysInput(false, "a", "b")
	in.Keys.Rotate = true
	res := runKeys(t, f, in)
	// Add the next key, verify it, promote it on the worker, then remove the old one.
	want := []string{"EnsureClusterKey", "ReadHostKeys", "EnsureAuthorizedKeys", "RecordOperatorKnownHosts", "EnsureKnownHosts",
		"VerifyKeyLogin", "PromoteClusterKey", "EnsureAuthorizedKeys"}
	if got := f.phases(); !slices.Equal(got, want) {
		t.Fatalf("phases %v, want %v", got, want)
	}
	reqs := f.authorized["a"]
	if len(reqs) != 2 || !slices.Equal(reqs[0].Add, []string{curPub, nextPub}) || len(reqs[0].Remove) != 0 {
		t.Fatalf("first authorized_keys request %+v", reqs)
	}
	if len(reqs[1].Add) != 0 || !slices.Equal(reqs[1].Remove, []string{curPub}) {
		t.Fatalf("removal request %+v", reqs[1])
	}
	if !res.Rotated || res.RotationPending || res.ClusterKeyFingerprint != "SHA256:next" {
		t.Fatalf("result %+v", res)
	}
	if !strings.Contains(res.Hosts[0].Message, "old cluster key removed") {
		t.Fatalf("message %q", res.Hosts[0].Message)
	}
}

func TestDistributeKeysRotationPendingOnFailure(t *testing.T) {
	f := &fakeKeys{rotate: true, failHost: "b", failIn: "VerifyKeyLogin"}
	in := keysInput(false, "a", "b")
	in.Keys.Rotate = true
	res := runKeys(t, f, in)
	if slices.Contains(f.phases(), "PromoteClusterKey") {
		t.Fatalf("promoted although b lacks the new key: %v", f.calls)
	}
	if len(f.authorized["a"]) != 1 {
		t.Fatalf("old key removed from a: %+v", f.authorized["a"])
	}
	if !res.RotationPending || res.Rotated || res.ClusterKeyFingerprint != "SHA256:current" {
		t.Fatalf("result %+v", res)
	}
	if got := states(res); got != "a=changed b=failed" || !strings.Contains(res.Hosts[0].Message, "rotation pending") {
		t.Fatalf("states %s, a: %q", got, res.Hosts[0].Message)
	}
}

func TestDistributeKeysClusterKeyFailure(t *testing.T) {
	env := newKeysEnv(t)
	env.OnActivity(keyActs.EnsureClusterKey, mock.Anything, mock.Anything).Return(activities.ClusterKeyInfo{},
		temporal.NewNonRetryableApplicationError("key is protected by a passphrase", activities.ErrInvalidInput, nil))
	env.ExecuteWorkflow(DistributeKeys, keysInput(true, "a"))
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != ErrClusterKeyFailed || !appErr.NonRetryable() ||
		!strings.Contains(appErr.Message(), "passphrase") || !strings.Contains(appErr.Message(), testClusterKey) {
		t.Fatalf("want a non-retryable ClusterKeyFailed naming the key, got %v", err)
	}
}

func TestDistributeKeysRefusesBadInput(t *testing.T) {
	bad := map[string]func(*DistributeKeysInput){
		"no hosts":          func(in *DistributeKeysInput) { in.Hosts = nil },
		"no cluster key":    func(in *DistributeKeysInput) { in.Keys.ClusterKey = "" },
		"relative key":      func(in *DistributeKeysInput) { in.Keys.ClusterKey = "keys/cluster" },
		"public key":        func(in *DistributeKeysInput) { in.Keys.ClusterKey = "/k/cluster.pub" },
		"bad user":          func(in *DistributeKeysInput) { in.Keys.User = "x; rm -rf /" },
		"negative parallel": func(in *DistributeKeysInput) { in.Parallel = -1 },
		"duplicate name":    func(in *DistributeKeysInput) { in.Hosts[1].Name = "a" },
		"duplicate address": func(in *DistributeKeysInput) { in.Hosts[1].Address = in.Hosts[0].Address },
		"no known_hosts":    func(in *DistributeKeysInput) { in.Hosts[0].KnownHostsFile = "" },
	}
	for name, change := range bad {
		t.Run(name, func(t *testing.T) {
			env := newKeysEnv(t)
			in := keysInput(true, "a", "b")
			change(&in)
			env.ExecuteWorkflow(DistributeKeys, in)
			requireInvalidInput(t, env.GetWorkflowError(), "")
		})
	}
}

func TestDistributeKeysProgressQuery(t *testing.T) {
	env := newKeysEnv(t)
	// Slow down one phase to look at the run in the middle of it (the first matching
	// expectation wins, so this one goes before the fakes).
	env.OnActivity(keyActs.EnsureKnownHosts, mock.Anything, mock.Anything).After(time.Minute).Return(activities.FileEditResult{}, nil)
	f := &fakeKeys{}
	f.install(env)
	var mid DistributeKeysProgress
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(ProgressQuery)
		if err != nil {
			t.Errorf("query: %v", err)
			return
		}
		if err := v.Get(&mid); err != nil {
			t.Errorf("decode: %v", err)
		}
	}, 30*time.Second)
	env.ExecuteWorkflow(DistributeKeys, keysInput(false, "a", "b"))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if mid.Phase != KeysPhaseKnownHosts || len(mid.Hosts) != 2 || mid.Hosts[0].State != HostRunning {
		t.Fatalf("progress mid-run: %+v", mid)
	}
}

func TestDistributeKeysCancel(t *testing.T) {
	env := newKeysEnv(t)
	env.OnActivity(keyActs.ReadHostKeys, mock.Anything, mock.Anything).After(time.Hour).Return(activities.HostKeysResult{}, nil)
	f := &fakeKeys{}
	f.install(env)
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Minute)
	env.ExecuteWorkflow(DistributeKeys, keysInput(true, "a", "b"))
	if err := env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("want cancelled, got %v", err)
	}
}
