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

// CheckCertificatesName is the registered name of CheckCertificates: stable, histories use it.
const CheckCertificatesName = "CheckCertificates"

// CheckCertificatesInput is the one argument of CheckCertificates. From the Web UI:
//
//	{"hosts": [{"name": "master", "address": "10.211.73.11", ...}, ...],
//	 "check": {"minValidity": "720h", "action": "fail"}}
type CheckCertificatesInput struct {
	// Hosts are the nodes whose certificates are read (over SSH).
	Hosts []remote.Host `json:"hosts"`
	// Cluster is every host of the inventory: where a manager is looked for.
	Cluster []remote.Host                   `json:"cluster,omitempty"`
	Check   playbooks.CheckCertificatesStep `json:"check"`
	// Timeout bounds a rotation's wait (action rotate); default 30m.
	Timeout playbooks.Duration `json:"timeout,omitempty"`
}

// CheckCertificatesResult is the report.
type CheckCertificatesResult struct {
	Hosts   []HostOutcome `json:"hosts"`
	Manager string        `json:"manager,omitempty"`
	// Checked is when the remaining validities were computed (workflow time).
	Checked     time.Time          `json:"checked"`
	MinValidity playbooks.Duration `json:"minValidity"`
	// Root is the fingerprint of the swarm's root CA (sha256 of the DER).
	Root         string              `json:"root,omitempty"`
	RootNotAfter time.Time           `json:"rootNotAfter,omitzero"`
	Certificates []CertificateReport `json:"certificates"`
	// Below names what has less than MinValidity left: hosts, and "root CA".
	Below []string `json:"below,omitempty"`
	// Unlisted names swarm nodes outside Hosts: their certificates were not read.
	Unlisted []string `json:"unlisted,omitempty"`
	// Rotation is the RotateCA run's result, with action rotate.
	Rotation *RotateCAResult `json:"rotation,omitempty"`
}

func (r *CheckCertificatesResult) hostOutcomes() []HostOutcome { return r.Hosts }

// CertificateReport is one host's certificate.
type CertificateReport struct {
	Host      string             `json:"host"`
	NodeID    string             `json:"nodeId,omitempty"`
	Role      string             `json:"role,omitempty"`
	NotAfter  time.Time          `json:"notAfter,omitzero"`
	Remaining playbooks.Duration `json:"remaining,omitempty"`
	// Root is the fingerprint of the root the node trusts; CurrentRoot: the swarm's.
	Root        string `json:"root,omitempty"`
	CurrentRoot bool   `json:"currentRoot"`
	Below       bool   `json:"below,omitempty"`
	Error       string `json:"error,omitempty"`
}

// CheckCertificatesProgress is the result of CheckCertificates' "progress" query.
type CheckCertificatesProgress struct {
	Phase        string              `json:"phase"` // find-manager, inspect, read, rotate, reread, done, failed
	Manager      string              `json:"manager,omitempty"`
	Root         string              `json:"root,omitempty"`
	Certificates []CertificateReport `json:"certificates,omitempty"`
	// Rotation is the child RotateCA run's workflow ID, while it runs.
	Rotation string `json:"rotation,omitempty"`
	Message  string `json:"message,omitempty"`
}

// CheckCertificates reads each host's swarm certificate (its expiry, from the
// node's own disk) and the swarm's root CA (its fingerprint and expiry, through a
// manager), and reports them. When a certificate (or the root) has less than
// MinValidity left, it fails naming them, or, with action rotate, runs RotateCA as
// a child workflow (which renews every node's certificate) and reads them again.
func CheckCertificates(ctx workflow.Context, in CheckCertificatesInput) (*CheckCertificatesResult, error) {
	// Step 1. Check the input.
	check, err := checkCertificatesInput(in)
	if err != nil {
		return nil, invalidInput(err.Error())
	}
	cc := &certRun{progress: &CheckCertificatesProgress{Phase: CAPhaseManager}}
	if err := workflow.SetQueryHandlerWithOptions(ctx, ProgressQuery, func() (*CheckCertificatesProgress, error) {
		return cc.progress, nil
	}, workflow.QueryHandlerOptions{Description: "certificates read so far, and the rotation started, if any"}); err != nil {
		return nil, err
	}
	cc.publish(ctx)
	res := &CheckCertificatesResult{MinValidity: check.MinValidity}

	// Step 2. A manager, and the swarm's root.
	manager, err := findCAManager(ctx, check.Manager, in.Hosts, in.Cluster)
	if err != nil {
		return cc.fail(ctx, in, res, err)
	}
	res.Manager, cc.progress.Manager = manager.Name, manager.Name
	cc.progress.Phase = CAPhaseInspect
	cc.publish(ctx)
	var st activities.CAStatus
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, caOptions), swarmActs.InspectSwarmCA,
		activities.SwarmManagerRequest{Manager: manager}).Get(ctx, &st); err != nil {
		return cc.fail(ctx, in, res, err)
	}

	// Step 3. Every host's certificate, read from its disk.
	cc.progress.Phase = "read"
	cc.publish(ctx)
	cc.read(ctx, in, res, st)
	if len(res.Below) == 0 {
		cc.progress.Phase, cc.progress.Message = CAPhaseDone, "every certificate has more than "+durationText(check.MinValidity.Std())+" left"
		cc.publish(ctx)
		return cc.outcomes(in, res, false), nil
	}

	// Step 4. Below the threshold: fail, or rotate and read again.
	below := strings.Join(res.Below, ", ")
	if check.Action != playbooks.CertActionRotate {
		cc.progress.Phase = CAPhaseFailed
		cc.progress.Message = fmt.Sprintf("below minValidity %s: %s", durationText(check.MinValidity.Std()), below)
		cc.publish(ctx)
		cc.outcomes(in, res, false)
		if slices.Contains(res.Below, "root CA") {
			for i := range res.Hosts {
				if res.Hosts[i].State != HostFailed {
					res.Hosts[i].State = HostFailed
					res.Hosts[i].Message = fmt.Sprintf("the swarm's root CA expires %s, below minValidity %s", dateText(res.RootNotAfter), durationText(check.MinValidity.Std()))
				}
			}
		}
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("certificates with less than %s left: %s; renew them with a rotateCA step (or action: rotate)", durationText(check.MinValidity.Std()), below),
			ErrCertificatesExpiring, nil, res)
	}
	rotate := playbooks.RotateCAStep{}
	if check.Rotate != nil {
		rotate = *check.Rotate
	}
	rotate.Manager = manager.Name
	childID := workflow.GetInfo(ctx).WorkflowExecution.ID + "/rotateCA"
	cc.progress.Phase, cc.progress.Rotation = "rotate", childID
	cc.progress.Message = "below minValidity: " + below + "; rotating the root CA"
	cc.publish(ctx)
	cctx := childOptions(ctx, childID, "root CA rotation: certificates below "+durationText(check.MinValidity.Std())+" on "+below)
	var rot RotateCAResult
	err = workflow.ExecuteChildWorkflow(cctx, RotateCA, RotateCAInput{
		Hosts: in.Hosts, Cluster: in.Cluster, CA: rotate, Timeout: in.Timeout,
	}).Get(ctx, &rot)
	if err != nil {
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) && ae.HasDetails() {
			_ = ae.Details(&rot)
		}
		res.Rotation = &rot
		return cc.fail(ctx, in, res, err)
	}
	res.Rotation = &rot

	// Step 5. Read again: the report shows the renewed certificates.
	cc.progress.Phase = "reread"
	cc.publish(ctx)
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, caOptions), swarmActs.InspectSwarmCA,
		activities.SwarmManagerRequest{Manager: manager}).Get(ctx, &st); err != nil {
		return cc.fail(ctx, in, res, err)
	}
	before := res.Below
	cc.read(ctx, in, res, st)
	cc.progress.Phase = CAPhaseDone
	cc.progress.Message = fmt.Sprintf("rotated the root CA (%s → %s) for %s", short12(rot.OldRoot), short12(rot.NewRoot), strings.Join(before, ", "))
	cc.publish(ctx)
	cc.outcomes(in, res, true)
	if len(res.Below) > 0 {
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("after the rotation, still less than %s left: %s (is nodeCertExpiry shorter than minValidity?)", durationText(check.MinValidity.Std()), strings.Join(res.Below, ", ")),
			ErrCertificatesExpiring, nil, res)
	}
	return res, nil
}

// checkCertificatesInput validates CheckCertificates' input and returns its settings
// with their defaults applied (CheckCertificatesStep.Normalize).
func checkCertificatesInput(in CheckCertificatesInput) (playbooks.CheckCertificatesStep, error) {
	check := in.Check
	names, err := checkHosts(in.Hosts)
	if err != nil {
		return check, err
	}
	return check, check.Normalize(playbooks.Scope{Hosts: names, Inventory: hostNames(in.Cluster, in.Hosts)}).Err("check")
}

// certRun is the bookkeeping of one CheckCertificates execution.
type certRun struct {
	progress *CheckCertificatesProgress
}

// read fills the report from the swarm's status and every host's certificate.
func (cc *certRun) read(ctx workflow.Context, in CheckCertificatesInput, res *CheckCertificatesResult, st activities.CAStatus) {
	res.Root, res.RootNotAfter = st.RootFingerprint, st.RootNotAfter
	cc.progress.Root = st.RootFingerprint
	certs := make([]activities.NodeCertificate, len(in.Hosts))
	errs := make([]error, len(in.Hosts))
	eachHost(ctx, len(in.Hosts), 0, func(ctx workflow.Context, i int) {
		h := in.Hosts[i]
		errs[i] = workflow.ExecuteActivity(withSummary(ctx, caOptions, "read the certificate of "+h.Name), swarmActs.ReadNodeCertificate,
			activities.SwarmHostRequest{Host: h}).Get(ctx, &certs[i])
	})
	now := workflow.Now(ctx)
	res.Checked = now
	minValidity := res.MinValidity.Std()
	res.Certificates, res.Below, res.Unlisted = nil, nil, nil
	for i, h := range in.Hosts {
		r := CertificateReport{Host: h.Name}
		c := certs[i]
		switch {
		case errs[i] != nil:
			r.Error = errorMessage(errs[i])
		case c.Missing:
			r.Error = "no swarm certificate: not a swarm node"
		default:
			r.NodeID, r.Role, r.NotAfter, r.Root = c.NodeID, c.Role, c.NotAfter, c.Root
			r.Remaining = playbooks.Duration(c.NotAfter.Sub(now))
			r.CurrentRoot = c.Root == st.RootFingerprint
			if r.Remaining.Std() < minValidity {
				r.Below = true
				res.Below = append(res.Below, h.Name)
			}
		}
		res.Certificates = append(res.Certificates, r)
	}
	if !st.RootNotAfter.IsZero() && st.RootNotAfter.Sub(now) < minValidity {
		res.Below = append(res.Below, "root CA")
	}
	for _, n := range st.Nodes {
		listed := false
		for _, h := range in.Hosts {
			if m, ok := caNodeOf(st.Nodes, h); ok && m.ID == n.ID {
				listed = true
			}
		}
		if !listed {
			res.Unlisted = append(res.Unlisted, n.Hostname)
		}
	}
	cc.progress.Certificates = res.Certificates
	cc.publish(ctx)
}

// outcomes sets the per-host outcomes from the report.
func (cc *certRun) outcomes(in CheckCertificatesInput, res *CheckCertificatesResult, rotated bool) *CheckCertificatesResult {
	res.Hosts = make([]HostOutcome, 0, len(res.Certificates))
	for _, r := range res.Certificates {
		o := HostOutcome{Host: r.Host, State: HostUnchanged}
		switch {
		case r.Error != "" && strings.HasPrefix(r.Error, "no swarm certificate"):
			o.Message = r.Error
		case r.Error != "":
			o.State, o.Message = HostFailed, r.Error
		case r.Below:
			o.State = HostFailed
			o.Message = fmt.Sprintf("certificate expires %s (%s left), below minValidity %s", dateText(r.NotAfter), durationText(r.Remaining.Std()), durationText(res.MinValidity.Std()))
		default:
			if rotated {
				o.State = HostChanged
			}
			o.Message = fmt.Sprintf("certificate valid until %s (%s left)", dateText(r.NotAfter), durationText(r.Remaining.Std()))
			if rotated {
				o.Message = "renewed by a root CA rotation: " + o.Message
			}
			if !r.CurrentRoot {
				o.Message += "; trusts root " + short12(r.Root) + ", not the swarm's " + short12(res.Root)
			}
		}
		res.Hosts = append(res.Hosts, o)
	}
	return res
}

// fail ends the run: hosts without an outcome failed with err's message.
func (cc *certRun) fail(ctx workflow.Context, in CheckCertificatesInput, res *CheckCertificatesResult, err error) (*CheckCertificatesResult, error) {
	msg := errorMessage(err)
	cc.progress.Phase, cc.progress.Message = CAPhaseFailed, msg
	cc.publish(ctx)
	res.Hosts = make([]HostOutcome, 0, len(in.Hosts))
	for _, h := range in.Hosts {
		res.Hosts = append(res.Hosts, HostOutcome{Host: h.Name, State: HostFailed, Message: msg})
	}
	if temporal.IsCanceledError(err) || ctx.Err() != nil {
		return res, temporal.NewCanceledError("CheckCertificates cancelled")
	}
	typ := ErrCertificatesExpiring
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.Type() != "" {
		typ = ae.Type()
	}
	return res, temporal.NewNonRetryableApplicationError(msg, typ, nil, res)
}

// publish refreshes the Markdown the Web UI shows as the run's current details.
func (cc *certRun) publish(ctx workflow.Context) {
	p := cc.progress
	var b strings.Builder
	b.WriteString("**checkCertificates**")
	if p.Manager != "" {
		b.WriteString(" through " + p.Manager)
	}
	b.WriteString(": " + p.Phase + "\n\n")
	if p.Root != "" {
		b.WriteString("root CA `" + short12(p.Root) + "`\n\n")
	}
	if len(p.Certificates) > 0 {
		b.WriteString("| host | expires | left | root |\n|---|---|---|---|\n")
		for _, c := range p.Certificates {
			if c.Error != "" {
				b.WriteString("| " + c.Host + " | " + strings.ReplaceAll(c.Error, "|", "\\|") + " | | |\n")
				continue
			}
			mark := ""
			if c.Below {
				mark = " ⚠"
			}
			b.WriteString("| " + c.Host + " | " + dateText(c.NotAfter) + " | " + durationText(c.Remaining.Std()) + mark + " | " + short12(c.Root) + " |\n")
		}
	}
	if p.Rotation != "" {
		b.WriteString("\nrotation: " + p.Rotation + "\n")
	}
	if p.Message != "" {
		b.WriteString("\n" + p.Message + "\n")
	}
	workflow.SetCurrentDetails(ctx, b.String())
}

// durationText writes a validity in days and hours: "29d 23h", "5h".
func durationText(d time.Duration) string {
	if d < 0 {
		return "expired " + durationText(-d) + " ago"
	}
	days, hours := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
	switch {
	case days == 0:
		return fmt.Sprintf("%dh", hours)
	case hours == 0:
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd %dh", days, hours)
}

func dateText(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }
