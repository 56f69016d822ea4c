package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// RotateCAName is the registered name of RotateCA: stable, histories use it.
const RotateCAName = "RotateCA"

// RotateCAInput is the one argument of RotateCA. From the Web UI:
//
//	{"hosts": [{"name": "master", "address": "10.211.73.11", "port": 22, "user": "root",
//	  "identityFile": "/path/id_ed25519", "knownHostsFile": "/path/known_hosts"}, ...],
//	 "ca": {"nodeCertExpiry": "2160h"}, "timeout": "30m"}
type RotateCAInput struct {
	// Hosts are the nodes whose outcome is reported (the swarm rotates all its
	// nodes, listed or not).
	Hosts []remote.Host `json:"hosts"`
	// Cluster is every host of the inventory: where a manager is looked for.
	Cluster []remote.Host          `json:"cluster,omitempty"`
	CA      playbooks.RotateCAStep `json:"ca"`
	// Timeout bounds the wait for the rotation's end; default 30m. The swarm goes
	// on rotating after it: a new run attaches to the rotation.
	Timeout playbooks.Duration `json:"timeout,omitempty"`
}

// RotateCAResult is the rotation's outcome.
type RotateCAResult struct {
	Hosts   []HostOutcome `json:"hosts"`
	Manager string        `json:"manager,omitempty"`
	// Attached: a rotation was in progress (or done) already; this run followed it.
	Attached bool   `json:"attached,omitempty"`
	OldRoot  string `json:"oldRoot,omitempty"` // root fingerprints, sha256 of the DER
	NewRoot  string `json:"newRoot,omitempty"`
	// Counts is the last progress line: "TLS certificates 3/3 nodes, trust root 3/3".
	Counts   string              `json:"counts,omitempty"`
	Nodes    []activities.CANode `json:"nodes,omitempty"`
	Started  time.Time           `json:"started,omitzero"`
	Finished time.Time           `json:"finished,omitzero"`
	Notes    []string            `json:"notes,omitempty"`
}

func (r *RotateCAResult) hostOutcomes() []HostOutcome { return r.Hosts }

// RotateCAProgress is the result of RotateCA's "progress" query.
type RotateCAProgress struct {
	Phase    string `json:"phase"` // CAPhase*
	Manager  string `json:"manager,omitempty"`
	Attached bool   `json:"attached,omitempty"`
	OldRoot  string `json:"oldRoot,omitempty"`
	NewRoot  string `json:"newRoot,omitempty"`
	// Counts: "TLS certificates 2/3 nodes, trust root 3/3".
	Counts     string `json:"counts,omitempty"`
	InProgress bool   `json:"inProgress"`
	// HoldingUp names the nodes not done yet: "slave02 (down: certificate, trust root)".
	HoldingUp []string            `json:"holdingUp,omitempty"`
	Hint      string              `json:"hint,omitempty"`
	Nodes     []activities.CANode `json:"nodes,omitempty"`
	Started   time.Time           `json:"started,omitzero"`
	Updated   time.Time           `json:"updated,omitzero"`
	Message   string              `json:"message,omitempty"`
}

// Phases of RotateCA, as the progress query shows them.
const (
	CAPhaseManager  = "find-manager"
	CAPhaseInspect  = "inspect"
	CAPhaseStart    = "start"
	CAPhaseRotating = "rotating"
	CAPhaseDone     = "done"
	CAPhaseFailed   = "failed"
)

// Error types of the certificate procedures.
const (
	// ErrRotationIncomplete: the swarm did not finish the rotation in time. The
	// message names the nodes holding it up; the swarm goes on rotating.
	ErrRotationIncomplete = "CARotationIncomplete"
	// ErrCertificatesExpiring: a certificate has less than minValidity left.
	ErrCertificatesExpiring = "CertificatesExpiring"
)

var (
	// caStall is how long a rotation held up only by nodes that are not ready may
	// stand still before the run gives up and says so: swarm waits for ever.
	caStall = 3 * time.Minute
	// defaultCATimeout bounds the wait for the rotation's end.
	defaultCATimeout = 30 * time.Minute
)

// downNodeHint is what an operator does about nodes that hold a rotation up.
const downNodeHint = "swarm waits for every node it knows, down ones included: bring %s back, or remove %s from the swarm " +
	"(a removeNode step with force: true, or docker node rm --force); the rotation then completes, and a new run attaches to it"

// RotateCA rotates the swarm's root CA, as `docker swarm ca --rotate` does, and
// follows the rotation to its end: every node has a certificate from the new root
// and trusts it, and the swarm reports no rotation in progress. Progress is
// queryable ("progress") and shown as the run's details in the Web UI.
//
// It is resumable: the rotation is started by one activity that first compares the
// swarm with what was read before (a rotation in progress, another root, a
// ForceRotate already bumped mean it was started), and the rest only watches. A run
// that finds a rotation in progress follows it instead of starting another.
func RotateCA(ctx workflow.Context, in RotateCAInput) (*RotateCAResult, error) {
	// Step 1. Check the input before touching the swarm.
	if err := checkRotateCA(in); err != nil {
		return nil, invalidInput(err.Error())
	}
	timeout := in.Timeout.Std()
	if timeout <= 0 {
		timeout = defaultCATimeout
	}
	rc := &caRun{progress: &RotateCAProgress{Phase: CAPhaseManager, Started: workflow.Now(ctx)}}
	if err := workflow.SetQueryHandlerWithOptions(ctx, ProgressQuery, func() (*RotateCAProgress, error) {
		return rc.progress, nil
	}, workflow.QueryHandlerOptions{Description: "phase of the root CA rotation, nodes with the new certificate and trust root"}); err != nil {
		return nil, err
	}
	rc.publish(ctx)
	res := &RotateCAResult{Started: rc.progress.Started}

	// Step 2. A manager: the one named, or the first that answers.
	manager, err := findCAManager(ctx, in.CA.Manager, in.Hosts, in.Cluster)
	if err != nil {
		return rc.fail(ctx, in, res, err)
	}
	res.Manager, rc.progress.Manager = manager.Name, manager.Name
	aopts := workflow.WithActivityOptions(ctx, caOptions)

	// Step 3. Where the swarm stands.
	rc.progress.Phase = CAPhaseInspect
	rc.publish(ctx)
	var st activities.CAStatus
	if err := workflow.ExecuteActivity(aopts, swarmActs.InspectSwarmCA, activities.SwarmManagerRequest{Manager: manager}).Get(ctx, &st); err != nil {
		return rc.fail(ctx, in, res, err)
	}
	oldRoot := st.RootFingerprint
	res.OldRoot, rc.progress.OldRoot = oldRoot, oldRoot
	rc.update(ctx, st)

	// Step 4. Start the rotation, unless one is in progress: then follow it.
	if st.InProgress {
		res.Attached, rc.progress.Attached = true, true
		res.Notes = append(res.Notes, "a rotation was in progress already: this run followed it ("+st.Counts()+")")
		if in.CA.NodeCertExpiry > 0 || in.CA.RotateWorkerToken || in.CA.RotateManagerToken || in.CA.CACert != "" {
			res.Notes = append(res.Notes, "this run's settings (caCert, nodeCertExpiry, token rotation) were not applied: changing the CA config would start another rotation; run again once this one is done")
		}
	} else {
		rc.progress.Phase = CAPhaseStart
		rc.publish(ctx)
		var started activities.CARotationStart
		if err := workflow.ExecuteActivity(aopts, swarmActs.StartCARotation, activities.StartCARotationRequest{
			Manager: manager, OldRoot: oldRoot, ForceRotate: st.ForceRotate,
			CACert: in.CA.CACert, CAKey: in.CA.CAKey, NodeCertExpiry: in.CA.NodeCertExpiry,
			RotateWorkerToken: in.CA.RotateWorkerToken, RotateManagerToken: in.CA.RotateManagerToken,
		}).Get(ctx, &started); err != nil {
			return rc.fail(ctx, in, res, err)
		}
		if !started.Started {
			res.Attached, rc.progress.Attached = true, true
		}
		res.Notes = append(res.Notes, started.Message)
		rc.progress.Message = started.Message
		st = started.Status
		rc.update(ctx, st)
	}

	// Step 5. Follow it to the end, one watch per change.
	rc.progress.Phase = CAPhaseRotating
	rc.publish(ctx)
	deadline := workflow.Now(ctx).Add(timeout)
	lastChange := workflow.Now(ctx)
	for !activities.RotationDone(st, oldRoot) {
		now := workflow.Now(ctx)
		if !now.Before(deadline) {
			return rc.fail(ctx, in, res, rc.incomplete(st, fmt.Sprintf("the rotation did not end within %s", timeout)))
		}
		if down := st.DownHoldingUp(); len(down) > 0 && len(down) == len(st.HoldingUp()) && now.Sub(lastChange) >= caStall {
			return rc.fail(ctx, in, res, rc.incomplete(st, fmt.Sprintf("the rotation stands still for %s, held up only by nodes that are not ready", caStall)))
		}
		wait := min(caWatch, deadline.Sub(now))
		var next activities.CAStatus
		if err := workflow.ExecuteActivity(aopts, swarmActs.WatchCARotation, activities.WatchCARotationRequest{
			Manager: manager, Seen: st.Key(), MaxWait: playbooks.Duration(wait), OldRoot: oldRoot,
		}).Get(ctx, &next); err != nil {
			return rc.fail(ctx, in, res, err)
		}
		if next.Key() != st.Key() {
			lastChange = workflow.Now(ctx)
		}
		st = next
		rc.update(ctx, st)
	}

	// Step 6. Done: report per host.
	res.NewRoot, rc.progress.NewRoot = st.RootFingerprint, st.RootFingerprint
	rc.progress.Phase = CAPhaseDone
	rc.progress.Message = fmt.Sprintf("root %s replaced by %s", short12(oldRoot), short12(st.RootFingerprint))
	rc.update(ctx, st)
	res.Finished = workflow.Now(ctx)
	res.Notes = append(res.Notes, fmt.Sprintf("rotation done in %s: %s; both join tokens changed with the root", res.Finished.Sub(res.Started).Round(time.Second), st.Counts()))
	return rc.result(in, res, st, nil), nil
}

// checkRotateCA validates RotateCA's input (RotateCAStep.Normalize).
func checkRotateCA(in RotateCAInput) error {
	names, err := checkHosts(in.Hosts)
	if err != nil {
		return err
	}
	return in.CA.Normalize(playbooks.Scope{Hosts: names, Inventory: hostNames(in.Cluster, in.Hosts)}).Err("ca")
}

// findCAManager returns the named manager, or the first host of the cluster (then
// of hosts) whose engine answers as a reachable manager.
func findCAManager(ctx workflow.Context, name string, hosts, cluster []remote.Host) (remote.Host, error) {
	all := append(slices.Clone(cluster), hosts...)
	if name != "" {
		h, _ := hostNamed(all, name)
		return h, nil
	}
	var found string
	if err := workflow.ExecuteActivity(withSummary(ctx, caOptions, "find a swarm manager"), swarmActs.FindManager,
		activities.FindManagerRequest{Candidates: all}).Get(ctx, &found); err != nil {
		return remote.Host{}, err
	}
	h, _ := hostNamed(all, found)
	return h, nil
}

// caRun is the bookkeeping of one RotateCA execution.
type caRun struct {
	progress *RotateCAProgress
}

// update takes a new status into the progress and publishes it.
func (rc *caRun) update(ctx workflow.Context, st activities.CAStatus) {
	p := rc.progress
	p.Counts, p.InProgress, p.Nodes, p.HoldingUp = st.Counts(), st.InProgress, st.Nodes, st.HoldingUp()
	p.Updated = workflow.Now(ctx)
	p.Hint = ""
	if down := st.DownHoldingUp(); len(down) > 0 {
		names := strings.Join(down, ", ")
		p.Hint = fmt.Sprintf(downNodeHint, names, names)
	}
	rc.publish(ctx)
}

// incomplete is the error of a rotation that did not end: it names the nodes
// holding it up and what to do about down ones.
func (rc *caRun) incomplete(st activities.CAStatus, why string) error {
	msg := why + ": " + st.Counts()
	if h := st.HoldingUp(); len(h) > 0 {
		msg += "; waiting for " + strings.Join(h, ", ")
	}
	if down := st.DownHoldingUp(); len(down) > 0 {
		names := strings.Join(down, ", ")
		msg += ". " + strings.ToUpper(downNodeHint[:1]) + fmt.Sprintf(downNodeHint[1:], names, names)
	} else {
		msg += ". The swarm goes on rotating; run again to follow it to the end"
	}
	return temporal.NewNonRetryableApplicationError(msg, ErrRotationIncomplete, nil)
}

// fail ends the run: every host failed with err's message, the result as the
// error's details (RunPlaybook reads them for per-host outcomes).
func (rc *caRun) fail(ctx workflow.Context, in RotateCAInput, res *RotateCAResult, err error) (*RotateCAResult, error) {
	msg := errorMessage(err)
	rc.progress.Phase, rc.progress.Message = CAPhaseFailed, msg
	rc.publish(ctx)
	res.Finished = workflow.Now(ctx)
	rc.result(in, res, activities.CAStatus{Nodes: rc.progress.Nodes}, err)
	if temporal.IsCanceledError(err) || ctx.Err() != nil {
		return res, temporal.NewCanceledError("RotateCA cancelled")
	}
	typ := ErrRotationIncomplete
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.Type() != "" {
		typ = ae.Type()
	}
	return res, temporal.NewNonRetryableApplicationError(msg, typ, nil, res)
}

// result fills the per-host outcomes: changed when the node has the new
// certificate and root. When err is set every host failed: nodes that hold the
// rotation up carry the whole error (with what to do about them); nodes that are
// done say what they wait for, and the first host carries the whole error when no
// host of the step holds the rotation up.
func (rc *caRun) result(in RotateCAInput, res *RotateCAResult, st activities.CAStatus, err error) *RotateCAResult {
	res.Counts, res.Nodes = rc.progress.Counts, st.Nodes
	res.Hosts = make([]HostOutcome, 0, len(in.Hosts))
	full := ""
	if err != nil {
		full = errorMessage(err)
	}
	told := false
	for _, h := range in.Hosts {
		n, ok := caNodeOf(st.Nodes, h)
		o := HostOutcome{Host: h.Name, State: HostFailed, Message: full}
		switch {
		case ok && n.CertOK && n.RootOK && err == nil:
			o.State, o.Message = HostChanged, fmt.Sprintf("certificate from root %s, trusts it", short12(res.NewRoot))
		case ok && n.CertOK && n.RootOK:
			o.Message = "done here (new certificate, trusts the current root); the rotation is not"
			if waiting := st.HoldingUp(); len(waiting) > 0 {
				o.Message += ": it waits for " + strings.Join(waiting, ", ")
			}
		case ok && err != nil:
			o.Message = fmt.Sprintf("holds the rotation up (node %s, certificate %s, trust root %s): %s", n.State, okText(n.CertOK), okText(n.RootOK), full)
			told = true
		case err != nil:
			told = true
		default:
			o.State, o.Message = HostUnchanged, "not a node of the swarm: nothing to rotate"
		}
		res.Hosts = append(res.Hosts, o)
	}
	if err != nil && !told && len(res.Hosts) > 0 {
		res.Hosts[0].Message += ". " + full
	}
	return res
}

// publish refreshes the Markdown the Web UI shows as the run's current details.
func (rc *caRun) publish(ctx workflow.Context) {
	p := rc.progress
	var b strings.Builder
	b.WriteString("**rotateCA**")
	if p.Manager != "" {
		b.WriteString(" through " + p.Manager)
	}
	b.WriteString(": " + p.Phase)
	if p.Attached {
		b.WriteString(" (attached to a rotation in progress)")
	}
	b.WriteString("\n\n")
	if p.Counts != "" {
		b.WriteString(p.Counts + "\n\n")
	}
	if p.OldRoot != "" {
		b.WriteString("old root `" + short12(p.OldRoot) + "`")
		if p.NewRoot != "" {
			b.WriteString(", new root `" + short12(p.NewRoot) + "`")
		}
		b.WriteString("\n\n")
	}
	if len(p.Nodes) > 0 {
		b.WriteString("| node | state | certificate | trust root |\n|---|---|---|---|\n")
		for _, n := range p.Nodes {
			b.WriteString("| " + n.Hostname + " | " + n.State + " | " + okText(n.CertOK) + " | " + okText(n.RootOK) + " |\n")
		}
	}
	if p.Hint != "" {
		b.WriteString("\n" + p.Hint + "\n")
	}
	if p.Message != "" {
		b.WriteString("\n" + p.Message + "\n")
	}
	workflow.SetCurrentDetails(ctx, b.String())
}

// caNodeOf picks host h's node: by address, else by hostname; a ready node before
// the down entry a node that rejoined leaves behind.
func caNodeOf(nodes []activities.CANode, h remote.Host) (activities.CANode, bool) {
	for _, match := range []func(activities.CANode) bool{
		func(n activities.CANode) bool { return n.Addr == h.Address && n.State == "ready" },
		func(n activities.CANode) bool { return n.Addr == h.Address },
		func(n activities.CANode) bool { return n.Hostname == h.Name && n.State == "ready" },
		func(n activities.CANode) bool { return n.Hostname == h.Name },
	} {
		if i := slices.IndexFunc(nodes, match); i >= 0 {
			return nodes[i], true
		}
	}
	return activities.CANode{}, false
}

func okText(ok bool) string {
	if ok {
		return "new"
	}
	return "old"
}

func short12(fp string) string {
	if len(fp) > 12 {
		return fp[:12]
	}
	return fp
}
