package activities

import (
	"context"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// Ways an engine is kept running, as StartEngineResult.Manager reports them.
const (
	EngineBySystemd    = BySystemd    // systemctl enable --now docker
	EngineBySupervisor = BySupervisor // /etc/clusterflow/services.d/dockerd (lab nodes)
	EngineBySysv       = BySysv       // service docker start (/etc/init.d/docker)
)

// StartEngineRequest is the input of StartDockerEngine.
type StartEngineRequest struct {
	Host remote.Host `json:"host"`
	// Restart a running engine: its configuration changed.
	Restart bool `json:"restart,omitempty"`
}

// StartEngineResult says what StartDockerEngine did.
type StartEngineResult struct {
	Changed bool   `json:"changed"`
	Manager string `json:"manager"`
	// Action is what was done: "started", "restarted", "enabled", "waited" (the
	// supervisor was already (re)starting it), or "" (running, nothing to do).
	Action string `json:"action,omitempty"`
}

// engine is the Docker engine as a daemon to keep running.
func (d *Docker) engine() daemon {
	return daemon{
		unit: "docker", supervised: "dockerd", sysv: true, pidFile: "/var/run/docker.pid",
		program:    "dockerd",
		staleFiles: []string{d.daemonJSON},
		probe:      []string{"docker", d.dockerSocket},
		endpoint:   d.dockerSocket,
		sysvLog:    "/var/log/docker.log",
		what:       "the engine",
		missing:    "dockerd is not installed (not on root's PATH); install the engine packages first",
		noManager:  "cannot start dockerd: the host has no systemd, no clusterflow node supervisor (/etc/clusterflow/services.d) and no /etc/init.d/docker",
		notReady:   engineNotReady,
	}
}

// StartDockerEngine makes sure the engine runs and starts at boot (see
// daemon.plan):
//
//   - with systemd (/run/systemd/system exists): systemctl enable, then start, or
//     restart when req.Restart;
//   - else, on hosts with the clusterflow node supervisor (/etc/clusterflow/
//     services.d, the lab nodes): the service file dockerd, through
//     clusterflow-service when installed, else written directly; the supervisor
//     restarts the engine when it exits and at every boot;
//   - else with the SysV script: service docker start (or restart).
//
// A running engine older than daemon.json, or whose binary a package upgrade
// replaced, is restarted too. Hosts with none of these managers fail with a
// non-retryable ErrRemoteFailed. Then it waits up to a minute for the engine to
// answer on its socket. An engine that was already running and enabled, with no
// restart due, is left alone (unchanged).
func (d *Docker) StartDockerEngine(ctx context.Context, req StartEngineRequest) (StartEngineResult, error) {
	op, done := d.begin(ctx, req.Host)
	defer done()
	res, err := ensureRunning(ctx, op, d.engine(), req.Restart)
	return StartEngineResult(res), err
}
