package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// InstallDockerName is the registered name of InstallDocker: stable, histories use it.
const InstallDockerName = "InstallDocker"

// InstallDockerInput is the one argument of InstallDocker: the hosts (resolved, as
// in a plan) and the playbook's installDocker step. From the Web UI:
//
//	{"hosts": [{"name": "master", "address": "10.211.73.11", "port": 22, "user": "root",
//	  "identityFile": "/path/id_ed25519", "knownHostsFile": "/path/known_hosts"}],
//	 "docker": {"source": "distro", "users": ["alice"]}, "parallel": 3}
type InstallDockerInput struct {
	Hosts  []remote.Host               `json:"hosts"`
	Docker playbooks.InstallDockerStep `json:"docker"`
	// Parallel is how many hosts are worked on at once; 0 means all of them.
	Parallel int `json:"parallel,omitempty"`
}

// EngineInfo is a host's engine as its API reports it, read over SSH.
type EngineInfo struct {
	Host    string `json:"host"`
	Version string `json:"version"`
	// APIVersion is the API version negotiated with the engine.
	APIVersion string `json:"apiVersion"`
}

// InstallDockerResult is what InstallDocker did: one outcome per host, in input
// order, and the engine of every host that got that far.
type InstallDockerResult struct {
	Hosts   []HostOutcome `json:"hosts"`
	Engines []EngineInfo  `json:"engines"`
}

func (r *InstallDockerResult) hostOutcomes() []HostOutcome { return r.Hosts }

// Phases of a host in InstallDocker, in order, as the progress query shows them.
const (
	DockerPhasePending      = "pending"
	DockerPhaseDetectOS     = "detect-os"
	DockerPhasePackages     = "packages"
	DockerPhaseDaemonConfig = "daemon-config"
	DockerPhaseUsers        = "users"
	DockerPhaseStart        = "start"
	DockerPhaseVerify       = "verify"
	DockerPhaseDone         = "done"
)

// InstallDockerProgress is the result of InstallDocker's "progress" query.
type InstallDockerProgress struct {
	Source string         `json:"source"`
	Hosts  []HostProgress `json:"hosts"`
}

// InstallDocker installs, configures and starts a Docker engine on every host, at
// most in.Parallel hosts at a time. Each host goes through DetectOS,
// InstallDockerPackages, ConfigureDockerDaemon, AddDockerUsers, StartDockerEngine
// and VerifyDockerEngine (the engine's version read through its API over SSH); the
// first activity that fails stops that host only. Every activity checks before it
// acts, so a second run reports every host unchanged.
//
// Failed hosts are reported in the result, not as an error: the caller (RunPlaybook)
// applies the step's failure budget. Invalid input fails the run with InvalidInput
// before any host is touched. Per-host phase and state are readable at any time
// through the "progress" query.
func InstallDocker(ctx workflow.Context, in InstallDockerInput) (*InstallDockerResult, error) {
	// Step 1. Check the input before touching any host.
	spec, err := checkInstallDocker(in)
	if err != nil {
		return nil, invalidInput(err.Error())
	}
	d := newDockerRun(in, spec)

	// Step 2. Publish progress.
	if err := workflow.SetQueryHandlerWithOptions(ctx, ProgressQuery, func() (*InstallDockerProgress, error) {
		return &InstallDockerProgress{Source: spec.Source, Hosts: d.hosts.hosts}, nil
	}, workflow.QueryHandlerOptions{Description: "per-host phase and state of the Docker installation"}); err != nil {
		return nil, err
	}
	d.publish(ctx)

	// Step 3. Work on the hosts, at most parallel at a time, each in its own
	// coroutine.
	started := eachHost(ctx, len(in.Hosts), in.Parallel, d.installHost)
	for i := started; i < len(in.Hosts); i++ {
		d.stop(ctx, i, HostSkipped, "not started: the run was cancelled")
	}

	// Step 4. Report.
	res := d.result()
	if ctx.Err() != nil {
		return res, temporal.NewCanceledError("InstallDocker cancelled")
	}
	return res, nil
}

// checkInstallDocker validates the input and returns the step with its defaults
// applied (InstallDockerStep.Normalize).
func checkInstallDocker(in InstallDockerInput) (playbooks.InstallDockerStep, error) {
	spec := in.Docker
	if _, err := checkHosts(in.Hosts); err != nil {
		return spec, err
	}
	if in.Parallel < 0 {
		return spec, fmt.Errorf("parallel must not be negative (0 means all hosts at once), not %d", in.Parallel)
	}
	return spec, spec.Normalize(playbooks.Scope{}).Err("docker")
}

// dockerRun is the state of one InstallDocker execution. Host coroutines each
// write only their own index.
type dockerRun struct {
	in      InstallDockerInput
	spec    playbooks.InstallDockerStep
	hosts   *hostTracker
	engines []*EngineInfo
}

func newDockerRun(in InstallDockerInput, spec playbooks.InstallDockerStep) *dockerRun {
	return &dockerRun{
		in:      in,
		spec:    spec,
		hosts:   newHostTracker(in.Hosts, DockerPhasePending),
		engines: make([]*EngineInfo, len(in.Hosts)),
	}
}

// installHost runs the activities of host i in order and records its outcome.
func (d *dockerRun) installHost(ctx workflow.Context, i int) {
	h := d.in.Hosts[i]
	d.hosts.hosts[i].State = HostRunning

	var osInfo activities.OSInfo
	if !d.call(ctx, i, DockerPhaseDetectOS, dockerQuickOptions, dockerActs.DetectOS,
		activities.DockerHostRequest{Host: h}, &osInfo) {
		return
	}

	var pkgs activities.PackagesResult
	if !d.call(ctx, i, DockerPhasePackages, dockerPackageOptions, dockerActs.InstallDockerPackages, activities.PackagesRequest{
		Host: h, OS: osInfo, Source: d.spec.Source, Version: d.spec.Version, Mirror: d.spec.Mirror, Packages: d.spec.Packages,
	}, &pkgs) {
		return
	}
	d.hosts.note(i, pkgs.Changed, pkgs.Message)

	var conf activities.DaemonConfigResult
	if !d.call(ctx, i, DockerPhaseDaemonConfig, dockerQuickOptions, dockerActs.ConfigureDockerDaemon,
		activities.DaemonConfigRequest{Host: h, Config: d.spec.DaemonConfig}, &conf) {
		return
	}
	if conf.Changed {
		d.hosts.note(i, true, fmt.Sprintf("%s: set %s", conf.Path, strings.Join(conf.Keys, ", ")))
	}

	var users activities.DockerUsersResult
	if !d.call(ctx, i, DockerPhaseUsers, dockerQuickOptions, dockerActs.AddDockerUsers,
		activities.DockerUsersRequest{Host: h, Users: d.spec.Users}, &users) {
		return
	}
	switch {
	case users.Changed && len(users.Added) > 0:
		d.hosts.note(i, true, "docker group: added "+strings.Join(users.Added, ", "))
	case users.Changed:
		d.hosts.note(i, true, "docker group created")
	}

	var start activities.StartEngineResult
	if !d.call(ctx, i, DockerPhaseStart, dockerQuickOptions, dockerActs.StartDockerEngine,
		activities.StartEngineRequest{Host: h, Restart: conf.Changed}, &start) {
		return
	}
	if start.Changed {
		d.hosts.note(i, true, fmt.Sprintf("engine %s (%s)", start.Action, start.Manager))
	}

	var engine activities.EngineVersion
	if !d.call(ctx, i, DockerPhaseVerify, dockerQuickOptions, dockerActs.VerifyDockerEngine,
		activities.DockerHostRequest{Host: h}, &engine) {
		return
	}
	d.engines[i] = &EngineInfo{Host: h.Name, Version: engine.Version, APIVersion: engine.APIVersion}
	d.hosts.note(i, false, fmt.Sprintf("engine %s answers over SSH (API %s)", engine.Version, engine.APIVersion))

	d.hosts.succeed(i, DockerPhaseDone)
	d.publish(ctx)
}

// call runs one activity of host i in the given phase. On failure it records the
// host's outcome and returns false: the host's sequence stops there.
func (d *dockerRun) call(ctx workflow.Context, i int, phase string, opts workflow.ActivityOptions, activity, req, res any) bool {
	d.hosts.hosts[i].Phase = phase
	d.publish(ctx)
	err := workflow.ExecuteActivity(withSummary(ctx, opts, fmt.Sprintf("%s on %s", phase, d.in.Hosts[i].Name)), activity, req).Get(ctx, res)
	if err == nil {
		return true
	}
	if temporal.IsCanceledError(err) || ctx.Err() != nil {
		d.stop(ctx, i, HostSkipped, "cancelled during "+phase)
		return false
	}
	d.stop(ctx, i, HostFailed, phase+": "+errorMessage(err))
	return false
}

// stop records host i's final state.
func (d *dockerRun) stop(ctx workflow.Context, i int, state, msg string) {
	d.hosts.finish(i, state, msg)
	d.publish(ctx)
}

func (d *dockerRun) result() *InstallDockerResult {
	res := &InstallDockerResult{Hosts: d.hosts.outcomes(), Engines: []EngineInfo{}}
	for _, e := range d.engines {
		if e != nil {
			res.Engines = append(res.Engines, *e)
		}
	}
	return res
}

// publish refreshes the Markdown the Web UI shows as the run's current details.
func (d *dockerRun) publish(ctx workflow.Context) {
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**InstallDocker** (source %s)\n\n", d.spec.Source)+d.hosts.table(false))
}
