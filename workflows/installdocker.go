package workflows

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

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
	Source string               `json:"source"`
	Hosts  []DockerHostProgress `json:"hosts"`
}

// DockerHostProgress is one host's state: the phase it is in (or stopped in) and
// HostPending, HostRunning, HostChanged, HostUnchanged, HostFailed or HostSkipped.
type DockerHostProgress struct {
	Host    string `json:"host"`
	Phase   string `json:"phase"`
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
}

// Activity option presets of InstallDocker.
var (
	// dockerQuickOptions serve the short activities: OS detection, daemon.json,
	// group membership, engine start (which waits up to a minute for the engine)
	// and the API check.
	dockerQuickOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		// A dead worker's attempt is retried within 20 s.
		HeartbeatTimeout: hostHeartbeat,
		// A cancelled run stops its remote commands before it reports cancelled.
		WaitForCancellation: true,
		RetryPolicy:         dockerRetry(5, 30*time.Second),
	}
	// dockerPackageOptions serve InstallDockerPackages.
	dockerPackageOptions = workflow.ActivityOptions{
		// apt on a slow mirror, or a large offline bundle over a slow link, takes
		// minutes.
		StartToCloseTimeout: 20 * time.Minute,
		// Heartbeats come from the worker every few seconds whatever apt prints; a
		// killed worker's install is retried on another worker after this.
		HeartbeatTimeout:    30 * time.Second,
		WaitForCancellation: true,
		// Lock contention (another apt run) asks for a retry in 15 s; an unreachable
		// mirror backs off to a minute between tries.
		RetryPolicy: dockerRetry(8, time.Minute),
	}
)

// dockerRetry is the retry policy of the Docker activities. Errors that the same
// input would hit again are final.
func dockerRetry(attempts int32, maxInterval time.Duration) *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:    2 * time.Second,
		BackoffCoefficient: 2,
		MaximumInterval:    maxInterval,
		MaximumAttempts:    attempts,
		NonRetryableErrorTypes: []string{
			activities.ErrInvalidInput, activities.ErrAuthFailed,
			activities.ErrHostKeyMismatch, activities.ErrHostKeyUnknown,
			activities.ErrRemoteFailed, activities.ErrUnsupportedOS,
			activities.ErrPackageUnavailable, activities.ErrInvalidDaemonConfig,
		},
	}
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
		return d.progress, nil
	}, workflow.QueryHandlerOptions{Description: "per-host phase and state of the Docker installation"}); err != nil {
		return nil, err
	}
	d.publish(ctx)

	// Step 3. Work on the hosts, at most parallel at a time, each in its own
	// coroutine.
	parallel := in.Parallel
	if parallel <= 0 || parallel > len(in.Hosts) {
		parallel = len(in.Hosts)
	}
	sem := workflow.NewSemaphore(ctx, int64(parallel))
	wg := workflow.NewWaitGroup(ctx)
	for i := range in.Hosts {
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			if err := sem.Acquire(ctx, 1); err != nil {
				d.stop(ctx, i, HostSkipped, "not started: the run was cancelled")
				return
			}
			defer sem.Release(1)
			d.installHost(ctx, i)
		})
	}
	wg.Wait(ctx)

	// Step 4. Report.
	res := d.result()
	if ctx.Err() != nil {
		return res, temporal.NewCanceledError("InstallDocker cancelled")
	}
	return res, nil
}

// checkInstallDocker validates the input and returns the step with defaults
// applied (source distro, mirror without a trailing slash).
func checkInstallDocker(in InstallDockerInput) (playbooks.InstallDockerStep, error) {
	spec := in.Docker
	if _, err := checkHosts(in.Hosts); err != nil {
		return spec, err
	}
	if in.Parallel < 0 {
		return spec, fmt.Errorf("parallel must not be negative (0 means all hosts at once), not %d", in.Parallel)
	}
	if spec.Source == "" {
		spec.Source = playbooks.DockerFromDistro
	}
	switch spec.Source {
	case playbooks.DockerFromDistro, playbooks.DockerFromRepo, playbooks.DockerFromOffline:
	default:
		return spec, fmt.Errorf("unknown docker source %q: use %q, %q or %q", spec.Source,
			playbooks.DockerFromDistro, playbooks.DockerFromRepo, playbooks.DockerFromOffline)
	}
	if spec.Mirror != "" {
		if spec.Source != playbooks.DockerFromRepo {
			return spec, fmt.Errorf("mirror is used only with source %q, not %q", playbooks.DockerFromRepo, spec.Source)
		}
		u, err := url.Parse(spec.Mirror)
		switch {
		case err != nil:
			return spec, fmt.Errorf("mirror %q is not a URL: %v", spec.Mirror, err)
		case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
			return spec, fmt.Errorf("mirror %q must be an http:// or https:// URL such as %s", spec.Mirror, activities.DefaultDockerMirror)
		case u.User != nil, u.RawQuery != "", u.Fragment != "", strings.ContainsAny(spec.Mirror, " \t\n[]"):
			return spec, fmt.Errorf("mirror %q must be a plain URL, without credentials, query or spaces", spec.Mirror)
		}
		spec.Mirror = strings.TrimRight(spec.Mirror, "/")
	}
	switch {
	case spec.Source == playbooks.DockerFromOffline && spec.Packages == "":
		return spec, errors.New(`source offline needs "packages": a directory of .deb files on the worker`)
	case spec.Source == playbooks.DockerFromOffline && !path.IsAbs(spec.Packages):
		return spec, fmt.Errorf("packages %q must be an absolute path on the worker", spec.Packages)
	case spec.Source != playbooks.DockerFromOffline && spec.Packages != "":
		return spec, fmt.Errorf("packages is used only with source %q, not %q", playbooks.DockerFromOffline, spec.Source)
	}
	if spec.Version != "" && !debVersionRE.MatchString(spec.Version) {
		return spec, fmt.Errorf("version %q is not a Debian package version (e.g. 20.10.24 or 5:27.3.1-1~debian.12~bookworm)", spec.Version)
	}
	var users []string
	for _, u := range spec.Users {
		switch {
		case !userNameRE.MatchString(u):
			return spec, fmt.Errorf("users: %q is not a user name", u)
		case slices.Contains(users, u):
			return spec, fmt.Errorf("users: %q is listed twice", u)
		}
		users = append(users, u)
	}
	if _, ok := spec.DaemonConfig[""]; ok {
		return spec, errors.New("daemonConfig has an empty key")
	}
	return spec, nil
}

var (
	// debVersionRE is what a Debian version, or the start of one, may contain.
	debVersionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+~:-]*$`)
	// userNameRE is a user name useradd would accept.
	userNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$`)
)

// dockerRun is the state of one InstallDocker execution. Host coroutines each
// write only their own index.
type dockerRun struct {
	in       InstallDockerInput
	spec     playbooks.InstallDockerStep
	progress *InstallDockerProgress
	outcomes []HostOutcome
	engines  []*EngineInfo
}

func newDockerRun(in InstallDockerInput, spec playbooks.InstallDockerStep) *dockerRun {
	d := &dockerRun{
		in:       in,
		spec:     spec,
		progress: &InstallDockerProgress{Source: spec.Source},
		outcomes: make([]HostOutcome, len(in.Hosts)),
		engines:  make([]*EngineInfo, len(in.Hosts)),
	}
	for i, h := range in.Hosts {
		d.progress.Hosts = append(d.progress.Hosts, DockerHostProgress{Host: h.Name, Phase: DockerPhasePending, State: HostPending})
		d.outcomes[i] = HostOutcome{Host: h.Name, State: HostPending}
	}
	return d
}

// installHost runs the activities of host i in order and records its outcome.
func (d *dockerRun) installHost(ctx workflow.Context, i int) {
	h := d.in.Hosts[i]
	hp := &d.progress.Hosts[i]
	hp.State = HostRunning
	var notes []string
	changed := false

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
	changed = changed || pkgs.Changed
	notes = append(notes, pkgs.Message)

	var conf activities.DaemonConfigResult
	if !d.call(ctx, i, DockerPhaseDaemonConfig, dockerQuickOptions, dockerActs.ConfigureDockerDaemon,
		activities.DaemonConfigRequest{Host: h, Config: d.spec.DaemonConfig}, &conf) {
		return
	}
	if conf.Changed {
		changed = true
		notes = append(notes, fmt.Sprintf("%s: set %s", conf.Path, strings.Join(conf.Keys, ", ")))
	}

	var users activities.DockerUsersResult
	if !d.call(ctx, i, DockerPhaseUsers, dockerQuickOptions, dockerActs.AddDockerUsers,
		activities.DockerUsersRequest{Host: h, Users: d.spec.Users}, &users) {
		return
	}
	if users.Changed {
		changed = true
		if len(users.Added) > 0 {
			notes = append(notes, "docker group: added "+strings.Join(users.Added, ", "))
		} else {
			notes = append(notes, "docker group created")
		}
	}

	var start activities.StartEngineResult
	if !d.call(ctx, i, DockerPhaseStart, dockerQuickOptions, dockerActs.StartDockerEngine,
		activities.StartEngineRequest{Host: h, Restart: conf.Changed}, &start) {
		return
	}
	if start.Changed {
		changed = true
		notes = append(notes, fmt.Sprintf("engine %s (%s)", start.Action, start.Manager))
	}

	var engine activities.EngineVersion
	if !d.call(ctx, i, DockerPhaseVerify, dockerQuickOptions, dockerActs.VerifyDockerEngine,
		activities.DockerHostRequest{Host: h}, &engine) {
		return
	}
	d.engines[i] = &EngineInfo{Host: h.Name, Version: engine.Version, APIVersion: engine.APIVersion}
	notes = append(notes, fmt.Sprintf("engine %s answers over SSH (API %s)", engine.Version, engine.APIVersion))

	state := HostUnchanged
	if changed {
		state = HostChanged
	}
	hp.Phase = DockerPhaseDone
	d.stop(ctx, i, state, strings.Join(notes, "; "))
}

// call runs one activity of host i in the given phase. On failure it records the
// host's outcome and returns false: the host's sequence stops there.
func (d *dockerRun) call(ctx workflow.Context, i int, phase string, opts workflow.ActivityOptions, activity, req, res any) bool {
	hp := &d.progress.Hosts[i]
	hp.Phase = phase
	d.publish(ctx)
	opts.Summary = fmt.Sprintf("%s on %s", phase, hp.Host)
	actx := workflow.WithActivityOptions(ctx, opts)
	err := workflow.ExecuteActivity(actx, activity, req).Get(ctx, res)
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
	hp := &d.progress.Hosts[i]
	hp.State, hp.Message = state, msg
	d.outcomes[i] = HostOutcome{Host: hp.Host, State: state, Message: msg}
	if state == HostSkipped {
		// HostOutcome knows changed, unchanged and failed only.
		d.outcomes[i].State = HostFailed
	}
	d.publish(ctx)
}

func (d *dockerRun) result() *InstallDockerResult {
	res := &InstallDockerResult{Hosts: d.outcomes, Engines: []EngineInfo{}}
	for _, e := range d.engines {
		if e != nil {
			res.Engines = append(res.Engines, *e)
		}
	}
	return res
}

// publish refreshes the Markdown the Web UI shows as the run's current details.
func (d *dockerRun) publish(ctx workflow.Context) {
	var b strings.Builder
	b.WriteString(fmt.Sprintf("**InstallDocker** (source %s)\n\n| host | phase | state | message |\n|---|---|---|---|\n", d.spec.Source))
	for _, h := range d.progress.Hosts {
		msg := strings.ReplaceAll(h.Message, "|", "\\|")
		b.WriteString(fmt.Sprintf("| %s | %s | %s | %s |\n", h.Host, h.Phase, h.State, msg))
	}
	workflow.SetCurrentDetails(ctx, b.String())
}
