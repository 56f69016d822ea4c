package workflows

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/rules"
	"github.com/clusterflow/clusterflow/playbooks"
)

// DistributeKeysName is the registered name of DistributeKeys: stable, histories use it.
const DistributeKeysName = "DistributeKeys"

// DistributeKeysInput is the one argument of DistributeKeys: the hosts of a
// distributeKeys step and its settings. Only paths and public keys travel in it.
//
//	{"hosts": [...], "keys": {"clusterKey": "/home/op/.ssh/cluster", "mesh": true}, "parallel": 5}
type DistributeKeysInput struct {
	Hosts []remote.Host                `json:"hosts"`
	Keys  playbooks.DistributeKeysStep `json:"keys"`
	// Parallel is how many hosts a phase works on at once; 0 means 10.
	Parallel int `json:"parallel,omitempty"`
	// Timeout bounds one attempt of one host activity; 0 means 2 minutes. Attempts
	// is the tries per host activity for retryable errors; 0 means 3. RunPlaybook
	// passes the step's timeout and attempts here.
	Timeout  playbooks.Duration `json:"timeout,omitempty"`
	Attempts int                `json:"attempts,omitempty"`
}

// DistributeKeysResult is what DistributeKeys did: one outcome per input host, in
// input order. Hosts that failed are in it with their message; the run then still
// completes, and the caller judges the failures (RunPlaybook: the step's budget).
type DistributeKeysResult struct {
	Hosts []HostOutcome `json:"hosts"`
	// ClusterKeyFingerprint is the cluster key's SHA256 fingerprint at the end of
	// the run (the new key after a completed rotation).
	ClusterKeyFingerprint string `json:"clusterKeyFingerprint"`
	// Mesh is true when a mesh was asked for and every host that got that far logged
	// in to every other one (strict host key checking).
	Mesh bool `json:"mesh"`
	// Rotated: the cluster key was replaced and the old one removed from the hosts.
	Rotated bool `json:"rotated,omitempty"`
	// RotationPending: a rotation was asked for but some host failed, so the new key
	// was not promoted and the old one stays; a re-run resumes with the same new key.
	RotationPending bool `json:"rotationPending,omitempty"`
}

func (r *DistributeKeysResult) hostOutcomes() []HostOutcome { return r.Hosts }

// DistributeKeysProgress is the result of the "progress" query of DistributeKeys.
type DistributeKeysProgress struct {
	Phase string        `json:"phase"`
	Hosts []HostOutcome `json:"hosts"` // State: pending, running, changed, unchanged, failed
}

// ErrClusterKeyFailed is the error type of a DistributeKeys run that could not make,
// read or promote the cluster key on the worker: not a per-host problem.
const ErrClusterKeyFailed = "ClusterKeyFailed"

// Phases of DistributeKeys, as the progress query reports them.
const (
	KeysPhaseClusterKey = "cluster key"
	KeysPhaseHostKeys   = "read host keys"
	KeysPhaseAuthorized = "authorized_keys"
	KeysPhaseKnownHosts = "known_hosts"
	KeysPhaseMesh       = "verify mesh"
	KeysPhaseVerifyNext = "verify new key"
	KeysPhasePromote    = "promote new key"
	KeysPhaseRemoveOld  = "remove old key"
	KeysPhaseDone       = "done"
)

// Defaults for the optional fields of DistributeKeysInput.
const (
	keysDefaultParallel = 10
	keysDefaultTimeout  = 2 * time.Minute
	keysDefaultAttempts = 3
)

// DistributeKeys gives a set of hosts SSH access with a cluster key, in phases that
// each fan out over the hosts (at most Parallel at a time), with a barrier between
// phases because later phases need every host's keys:
//
//  1. the cluster key pair exists on the worker (generated on first use);
//  2. every host's public host keys are read, and with Mesh its own key pair for the
//     user is ensured and its public key read;
//  3. every host's authorized_keys holds the cluster key (and with Mesh every other
//     host's key), once, and no retired cluster key;
//  4. every host's known_hosts, and the operator's, lists every host's host keys;
//  5. with Mesh, every host logs in to every other one;
//  6. with Rotate: the new key (added in 3) logs in to every host, becomes the
//     cluster key on the worker, and the old key is removed from every host.
//
// A host that fails a phase is left out of the later ones and reported failed; the
// run still returns its result. It fails only when the cluster key itself cannot be
// made or promoted, or on bad input. Per-host state is readable through the
// "progress" query.
func DistributeKeys(ctx workflow.Context, in DistributeKeysInput) (*DistributeKeysResult, error) {
	// Step 1. Check the input before touching anything.
	if err := checkDistributeKeys(&in); err != nil {
		return nil, invalidInput(err.Error())
	}
	r := newKeysRun(in)

	// Step 2. Publish progress.
	if err := workflow.SetQueryHandlerWithOptions(ctx, ProgressQuery, func() (*DistributeKeysProgress, error) {
		return &DistributeKeysProgress{Phase: r.phase, Hosts: r.outcomes()}, nil
	}, workflow.QueryHandlerOptions{Description: "phase and per-host state of the key distribution"}); err != nil {
		return nil, err
	}

	// Step 3. The cluster key, on the worker. Its private half stays in its file.
	r.phase = KeysPhaseClusterKey
	wctx := workflow.WithActivityOptions(ctx, workerFileOptions)
	var ck activities.ClusterKeyInfo
	req := activities.EnsureClusterKeyRequest{ClusterKey: in.Keys.ClusterKey, Rotate: in.Keys.Rotate}
	if err := workflow.ExecuteActivity(wctx, keyActs.EnsureClusterKey, req).Get(ctx, &ck); err != nil {
		return nil, r.fatal(ctx, "cannot make or read the cluster key "+in.Keys.ClusterKey, err)
	}
	r.fingerprint = ck.Current.Fingerprint
	for i := range in.Hosts {
		r.hosts.hosts[i].State = HostRunning
	}

	// Step 4. Host keys, and with Mesh each host's own key pair.
	keys := make([]activities.HostKeysResult, len(in.Hosts))
	err := r.fanOut(ctx, KeysPhaseHostKeys, func(actx workflow.Context, i int) workflow.Future {
		return workflow.ExecuteActivity(actx, keyActs.ReadHostKeys, activities.ReadHostKeysRequest{
			Host: in.Hosts[i], User: in.Keys.User, Mesh: in.Keys.Mesh,
		})
	}, func(i int, f workflow.Future) error {
		if err := f.Get(ctx, &keys[i]); err != nil {
			return err
		}
		if keys[i].Changed {
			r.change(i, "node key: "+keys[i].Note)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Step 5. authorized_keys: the cluster key (and the next one while rotating), every
	// other host's key with Mesh; the key a past rotation retired goes.
	add := []string{ck.Current.PublicKey}
	if ck.Next != nil {
		add = append(add, ck.Next.PublicKey)
	}
	var remove []string
	if ck.Retired != "" {
		remove = append(remove, ck.Retired)
	}
	alive := r.alive() // a snapshot, so that every host gets the same set of mesh keys
	err = r.fanOut(ctx, KeysPhaseAuthorized, func(actx workflow.Context, i int) workflow.Future {
		hostAdd := append([]string(nil), add...)
		if in.Keys.Mesh {
			for _, j := range alive {
				if j != i {
					hostAdd = append(hostAdd, keys[j].NodeKey)
				}
			}
		}
		return workflow.ExecuteActivity(actx, keyActs.EnsureAuthorizedKeys, activities.EnsureAuthorizedKeysRequest{
			Host: in.Hosts[i], User: in.Keys.User, Add: hostAdd, Remove: remove,
		})
	}, func(i int, f workflow.Future) error {
		var res activities.FileEditResult
		if err := f.Get(ctx, &res); err != nil {
			return err
		}
		r.fileChange(i, "authorized_keys", res)
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Step 6. known_hosts: every host's host keys on every host, under its address
	// and its name, and in the operator's known_hosts on the worker.
	alive = r.alive()
	var entries []activities.KnownHostsEntry
	var operator []activities.OperatorHostKeys
	for _, j := range alive {
		h := in.Hosts[j]
		entries = append(entries, activities.KnownHostsEntry{Name: h.Name, Address: h.Address, Port: h.Port, Keys: keys[j].HostKeys})
		operator = append(operator, activities.OperatorHostKeys{Host: h, Keys: keys[j].HostKeys})
	}
	if len(operator) > 0 {
		r.phase = KeysPhaseKnownHosts
		var res activities.RecordOperatorKnownHostsResult
		if err := workflow.ExecuteActivity(wctx, keyActs.RecordOperatorKnownHosts, activities.RecordOperatorKnownHostsRequest{Hosts: operator}).Get(ctx, &res); err != nil {
			if temporal.IsCanceledError(err) || ctx.Err() != nil {
				return nil, temporal.NewCanceledError()
			}
			// The operator's file is about these hosts: they fail with it.
			for _, j := range alive {
				r.fail(j, KeysPhaseKnownHosts, "operator's known_hosts: "+errorMessage(err))
			}
		}
		for _, name := range res.Changed {
			if j := r.hosts.index(name); j >= 0 && !r.hosts.done(j) {
				r.change(j, "operator's known_hosts: host keys recorded")
			}
		}
	}
	err = r.fanOut(ctx, KeysPhaseKnownHosts, func(actx workflow.Context, i int) workflow.Future {
		return workflow.ExecuteActivity(actx, keyActs.EnsureKnownHosts, activities.EnsureKnownHostsRequest{
			Host: in.Hosts[i], User: in.Keys.User, Entries: entries,
		})
	}, func(i int, f workflow.Future) error {
		var res activities.FileEditResult
		if err := f.Get(ctx, &res); err != nil {
			return err
		}
		r.fileChange(i, "known_hosts", res)
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Step 7. With Mesh, every host logs in to every other one.
	meshOK := false
	if in.Keys.Mesh {
		meshOK = true
		alive = r.alive()
		err = r.fanOut(ctx, KeysPhaseMesh, func(actx workflow.Context, i int) workflow.Future {
			var targets []activities.MeshTarget
			for _, j := range alive {
				if j != i {
					h := in.Hosts[j]
					targets = append(targets, activities.MeshTarget{Name: h.Name, Address: h.Address, Port: h.Port})
				}
			}
			return workflow.ExecuteActivity(actx, keyActs.VerifyMesh, activities.VerifyMeshRequest{
				Host: in.Hosts[i], User: in.Keys.User, Targets: targets,
			})
		}, func(i int, f workflow.Future) error {
			var res activities.VerifyMeshResult
			if err := f.Get(ctx, &res); err != nil {
				meshOK = false
				return err
			}
			r.note(i, fmt.Sprintf("mesh: logged in to %d other hosts", res.Checked))
			return nil
		})
		if err != nil {
			return nil, err
		}
		meshOK = meshOK && len(alive) > 0
	}

	// Step 8. Rotation: the new key must log in everywhere before it replaces the
	// old one. It is promoted on the worker before the old key is removed from the
	// hosts, so that the file at ClusterKey always holds a key every host accepts (the
	// inventory may use it as identityFile): a crash at any point leaves a state a
	// re-run finishes, since every run removes the key kept at ClusterKey+".old".
	rotated, pending := false, false
	if ck.Next != nil {
		err = r.fanOut(ctx, KeysPhaseVerifyNext, func(actx workflow.Context, i int) workflow.Future {
			return workflow.ExecuteActivity(actx, keyActs.VerifyKeyLogin, activities.VerifyKeyLoginRequest{
				Host: in.Hosts[i], IdentityFile: ck.Next.Path,
			})
		}, func(i int, f workflow.Future) error {
			return f.Get(ctx, nil)
		})
		if err != nil {
			return nil, err
		}
		if r.anyFailed() {
			pending = true
			for _, i := range r.alive() {
				r.note(i, "key rotation pending: not every host has the new key; the old key stays until a re-run completes the rotation")
			}
		} else {
			r.phase = KeysPhasePromote
			var pr activities.PromoteClusterKeyResult
			preq := activities.PromoteClusterKeyRequest{ClusterKey: in.Keys.ClusterKey, Fingerprint: ck.Next.Fingerprint}
			if err := workflow.ExecuteActivity(wctx, keyActs.PromoteClusterKey, preq).Get(ctx, &pr); err != nil {
				return nil, r.fatal(ctx, "cannot promote the new cluster key "+ck.Next.Path, err)
			}
			r.fingerprint = pr.Current.Fingerprint
			rotated = true
			err = r.fanOut(ctx, KeysPhaseRemoveOld, func(actx workflow.Context, i int) workflow.Future {
				return workflow.ExecuteActivity(actx, keyActs.EnsureAuthorizedKeys, activities.EnsureAuthorizedKeysRequest{
					Host: in.Hosts[i], User: in.Keys.User, Remove: []string{ck.Current.PublicKey},
				})
			}, func(i int, f workflow.Future) error {
				var res activities.FileEditResult
				if err := f.Get(ctx, &res); err != nil {
					return err
				}
				if res.Removed > 0 {
					r.change(i, "old cluster key removed")
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}

	// Step 9. The outcome.
	r.phase = KeysPhaseDone
	r.done = true
	return &DistributeKeysResult{
		Hosts:                 r.outcomes(),
		ClusterKeyFingerprint: r.fingerprint,
		Mesh:                  meshOK,
		Rotated:               rotated,
		RotationPending:       pending,
	}, nil
}

// checkDistributeKeys checks what a hand-written input could get wrong: the keys'
// settings (DistributeKeysStep.Normalize) and the hosts. Activities check again what
// they rely on.
func checkDistributeKeys(in *DistributeKeysInput) error {
	switch {
	case len(in.Hosts) == 0:
		return errors.New("hosts is empty")
	case in.Parallel < 0 || in.Attempts < 0 || in.Timeout < 0:
		return errors.New("parallel, attempts and timeout must not be negative")
	}
	if err := in.Keys.Normalize(playbooks.Scope{}).Err("keys"); err != nil {
		return err
	}
	names := map[string]bool{}
	addrs := map[string]string{}
	for i, h := range in.Hosts {
		where := fmt.Sprintf("hosts[%d] (%s)", i, h.Name)
		port := h.Port
		if port == 0 {
			port = 22
		}
		addr := h.Address + " port " + strconv.Itoa(port)
		switch {
		case h.Name == "":
			return fmt.Errorf("hosts[%d]: name is empty", i)
		case names[h.Name]:
			return fmt.Errorf("%s: host name %q appears twice", where, h.Name)
		case h.Address == "":
			return fmt.Errorf("%s: address is empty", where)
		case addrs[addr] != "":
			return fmt.Errorf("%s: same address and port as host %s", where, addrs[addr])
		case h.KnownHostsFile == "" || !filepath.IsAbs(h.KnownHostsFile):
			return fmt.Errorf("%s: knownHostsFile must be an absolute path on the worker", where)
		case in.Keys.User == "" && !rules.UserName(h.User):
			return fmt.Errorf("%s: login user %q is not a user name (%s)", where, h.User, rules.UserNameRule)
		}
		names[h.Name] = true
		addrs[addr] = h.Name
	}
	return nil
}

// keysRun is the state of one DistributeKeys execution. Slices are indexed like
// in.Hosts; nothing is ever ranged as a map.
type keysRun struct {
	in          DistributeKeysInput
	parallel    int
	step        playbooks.Step // the host activity preset's settings (name set per phase)
	phase       string
	hosts       *hostTracker
	fingerprint string
	done        bool
}

func newKeysRun(in DistributeKeysInput) *keysRun {
	r := &keysRun{
		in:       in,
		parallel: in.Parallel,
		step:     playbooks.Step{Timeout: in.Timeout, Attempts: in.Attempts},
		phase:    KeysPhaseClusterKey,
		hosts:    newHostTracker(in.Hosts, ""),
	}
	if r.parallel == 0 {
		r.parallel = keysDefaultParallel
	}
	if r.step.Timeout == 0 {
		r.step.Timeout = playbooks.Duration(keysDefaultTimeout)
	}
	if r.step.Attempts == 0 {
		r.step.Attempts = keysDefaultAttempts
	}
	return r
}

// alive lists the hosts that have not failed, in input order.
func (r *keysRun) alive() []int {
	var out []int
	for i := range r.in.Hosts {
		if !r.hosts.failed(i) {
			out = append(out, i)
		}
	}
	return out
}

func (r *keysRun) anyFailed() bool { return r.hosts.anyFailed() }

func (r *keysRun) fail(i int, phase, msg string) { r.hosts.fail(i, phase, msg) }

func (r *keysRun) change(i int, what string) { r.hosts.note(i, true, what) }
func (r *keysRun) note(i int, what string)   { r.hosts.note(i, false, what) }

// fileChange records what an edit of a file in ~/.ssh did.
func (r *keysRun) fileChange(i int, file string, res activities.FileEditResult) {
	if !res.Changed {
		return
	}
	var parts []string
	if res.Added > 0 {
		parts = append(parts, fmt.Sprintf("%d added", res.Added))
	}
	if res.Removed > 0 {
		parts = append(parts, fmt.Sprintf("%d removed", res.Removed))
	}
	if res.FixedAttrs || len(parts) == 0 {
		parts = append(parts, "mode or owner fixed")
	}
	r.change(i, file+": "+strings.Join(parts, ", "))
}

// outcomes is the per-host state: failed hosts with their message; at the end changed
// or unchanged with what happened; before the end pending or running.
func (r *keysRun) outcomes() []HostOutcome {
	out := make([]HostOutcome, len(r.in.Hosts))
	for i, h := range r.hosts.hosts {
		out[i] = HostOutcome{Host: h.Host, State: h.State, Message: h.Message}
		msg := r.hosts.message(i)
		switch {
		case r.hosts.failed(i):
		case !r.done:
			out[i].Message = msg
		case r.hosts.changed[i]:
			out[i].State, out[i].Message = HostChanged, msg
		default:
			out[i].State, out[i].Message = HostUnchanged, "up to date"
			if msg != "" {
				out[i].Message += "; " + msg
			}
		}
	}
	return out
}

// fanOut runs one phase: start is called for every host still in the run, at most
// r.parallel at a time, and finish for each completed activity; a host whose finish
// returns an error is failed with it and left out of later phases. It returns an
// error only when the run was cancelled.
func (r *keysRun) fanOut(ctx workflow.Context, phase string,
	start func(actx workflow.Context, i int) workflow.Future,
	finish func(i int, f workflow.Future) error) error {
	r.phase = phase
	targets := r.alive()
	step := r.step
	step.Name = phase
	fanOut(ctx, len(targets), r.parallel,
		func() bool { return ctx.Err() == nil },
		func(k int) workflow.Future {
			i := targets[k]
			return start(workflow.WithActivityOptions(ctx, hostOptions(step, r.in.Hosts[i])), i)
		},
		func(k int, f workflow.Future) {
			i := targets[k]
			err := finish(i, f)
			switch {
			case err == nil:
			case temporal.IsCanceledError(err) || ctx.Err() != nil:
				// The run was cancelled; the host is not to blame.
			default:
				r.fail(i, phase, errorMessage(err))
			}
		})
	if ctx.Err() != nil {
		return temporal.NewCanceledError()
	}
	return nil
}

// fatal is the run's error for a failure that is not about one host.
func (r *keysRun) fatal(ctx workflow.Context, what string, err error) error {
	if temporal.IsCanceledError(err) || ctx.Err() != nil {
		return temporal.NewCanceledError()
	}
	return temporal.NewNonRetryableApplicationError(what+": "+errorMessage(err), ErrClusterKeyFailed, nil)
}
