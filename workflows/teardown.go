package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// TeardownName is the registered name of Teardown: stable, histories use it.
const TeardownName = "Teardown"

// TeardownInput is the one argument of Teardown. From the Web UI:
//
//	{"hosts": [{"name": "master", ...}], "remove": {"op": "removeStack", "name": "demo"}, "timeout": "5m"}
type TeardownInput struct {
	// Hosts are the step's hosts: the manager candidates (removeService,
	// removeStack, removeNetwork) or the hosts whose volume goes (removeVolume).
	Hosts   []remote.Host        `json:"hosts"`
	Cluster []remote.Host        `json:"cluster,omitempty"`
	Remove  playbooks.RemoveStep `json:"remove"`
	// Timeout bounds the wait for tasks to go and networks to be free; default 5m.
	Timeout playbooks.Duration `json:"timeout,omitempty"`
}

// TeardownResult is what Teardown removed.
type TeardownResult struct {
	Hosts   []HostOutcome             `json:"hosts"`
	Manager string                    `json:"manager,omitempty"`
	Removed activities.ObjectsRemoved `json:"removed"`
}

func (r *TeardownResult) hostOutcomes() []HostOutcome { return r.Hosts }

// Phases of Teardown.
const (
	TeardownPhaseManager = "find-manager"
	TeardownPhaseRemove  = "remove"
	TeardownPhaseDone    = "done"
)

// TeardownProgress is the result of Teardown's "progress" query.
type TeardownProgress struct {
	Op      string                    `json:"op"`
	Name    string                    `json:"name"`
	Manager string                    `json:"manager,omitempty"`
	Removed activities.ObjectsRemoved `json:"removed"`
	Hosts   []HostProgress            `json:"hosts"`
}

// Teardown removes what a step names (step kinds removeService, removeStack,
// removeNetwork through a manager; removeVolume on each of the step's hosts),
// waiting until the removed services' tasks are gone before it removes the
// networks, secrets and configs they used. Removing what is not there is
// unchanged.
func Teardown(ctx workflow.Context, in TeardownInput) (*TeardownResult, error) {
	// Step 1. Check the input before touching any host.
	names, err := checkHosts(in.Hosts)
	if err != nil {
		return nil, invalidInput(err.Error())
	}
	if err := in.Remove.Normalize(playbooks.Scope{Hosts: names, Inventory: hostNames(in.Cluster, in.Hosts)}).Err("remove"); err != nil {
		return nil, invalidInput(err.Error())
	}
	r := in.Remove
	timeout := in.Timeout.Std()
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	res := &TeardownResult{}

	// Step 2. Publish progress.
	t := newHostTracker(in.Hosts, TeardownPhaseRemove)
	prog := &TeardownProgress{Op: r.Op, Name: r.Name, Hosts: t.hosts}
	if err := workflow.SetQueryHandlerWithOptions(ctx, ProgressQuery, func() (*TeardownProgress, error) {
		return prog, nil
	}, workflow.QueryHandlerOptions{Description: "what the teardown removed, per host"}); err != nil {
		return nil, err
	}
	publish := func() {
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%s %s**: %s\n\n%s", r.Op, r.Name,
			strings.ReplaceAll(prog.Removed.Message, "|", "\\|"), t.table(false)))
	}
	finish := func() (*TeardownResult, error) {
		res.Hosts = t.outcomes()
		publish()
		if ctx.Err() != nil {
			return res, temporal.NewCanceledError("Teardown cancelled")
		}
		return res, nil
	}
	publish()

	// Step 3. removeVolume: each host's engine.
	if r.Op == playbooks.KindRemoveVolume {
		eachHost(ctx, len(in.Hosts), 0, func(ctx workflow.Context, i int) {
			t.begin(i, TeardownPhaseRemove)
			var ch activities.SwarmChange
			if err := workflow.ExecuteActivity(withSummary(ctx, swarmOptions, "remove volume "+r.Name+" on "+in.Hosts[i].Name), swarmActs.RemoveVolume,
				activities.RemoveVolumeRequest{Host: in.Hosts[i], Name: r.Name}).Get(ctx, &ch); err != nil {
				t.fail(i, TeardownPhaseRemove, errorMessage(err))
			} else {
				t.note(i, ch.Changed, ch.Message)
				t.succeed(i, TeardownPhaseDone)
			}
			publish()
		})
		return finish()
	}

	// Step 4. The others through a manager; every step host gets the outcome.
	all := func(state, msg string) {
		for i := range in.Hosts {
			t.finish(i, state, msg)
		}
	}
	manager, err := serviceManager(ctx, r.Manager, in.Hosts, in.Cluster, "remove.manager")
	if err != nil {
		if isInvalidInput(err) {
			return nil, err
		}
		all(HostFailed, TeardownPhaseManager+": "+errorMessage(err))
		return finish()
	}
	res.Manager, prog.Manager = manager.Name, manager.Name
	for i := range in.Hosts {
		t.begin(i, TeardownPhaseRemove)
	}
	publish()
	if err := workflow.ExecuteActivity(withSummary(ctx, swarmWaitOptions(timeout), fmt.Sprintf("%s %s on %s", r.Op, r.Name, manager.Name)),
		swarmActs.RemoveSwarmObjects, activities.RemoveObjectsRequest{Manager: manager, Remove: r, MaxWait: playbooks.Duration(timeout)}).Get(ctx, &res.Removed); err != nil {
		all(HostFailed, TeardownPhaseRemove+": "+errorMessage(err))
		return finish()
	}
	prog.Removed = res.Removed
	state := HostUnchanged
	if res.Removed.Changed {
		state = HostChanged
	}
	all(state, res.Removed.Message)
	return finish()
}
