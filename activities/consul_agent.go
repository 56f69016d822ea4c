package activities

import (
	"context"
	"path"
	"regexp"
	"strings"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// Ways an agent is kept running, as StartConsulResult.Manager reports them (the
// same as the Docker engine's).
const (
	ConsulBySystemd    = BySystemd
	ConsulBySupervisor = BySupervisor
)

// StartConsulRequest is the input of StartConsul.
type StartConsulRequest struct {
	Host   remote.Host `json:"host"`
	Binary string      `json:"binary"` // the consul executable on the host
	// Restart a running agent: its binary or configuration changed.
	Restart bool `json:"restart,omitempty"`
}

// StartConsulResult says what StartConsul did.
type StartConsulResult struct {
	Changed bool   `json:"changed"`
	Manager string `json:"manager"`
	// Action: "started", "restarted", "enabled", "unit written", "waited" (the
	// supervisor was starting it already) or "" (running, nothing to do).
	Action string `json:"action,omitempty"`
}

// consulUnitText is the systemd unit clusterflow writes when no package brought
// one; the agent runs as root.
func consulUnitText(binary, configDir string) string {
	return `# written by clusterflow (ConsulBootstrap)
[Unit]
Description=Consul agent
Documentation=https://developer.hashicorp.com/consul/docs
Wants=network-online.target
After=network-online.target
ConditionDirectoryNotEmpty=` + configDir + `

[Service]
ExecStart=` + binary + ` agent -config-dir=` + configDir + `
ExecReload=/bin/kill -HUP $MAINPID
KillMode=process
KillSignal=SIGTERM
Restart=on-failure
RestartSec=2
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`
}

// safeArg is what may go into a service file or unit unquoted.
var safeArg = regexp.MustCompile(`^/[A-Za-z0-9/._-]+$`)

// agent is the Consul agent of binary as a daemon to keep running.
func (c *Consul) agent(binary string) daemon {
	unitText := consulUnitText(binary, c.configDir)
	return daemon{
		unit: "consul", supervised: "consul",
		program: binary, args: []string{"agent", "-config-dir=" + c.configDir}, matchArgs: true,
		staleFiles: []string{path.Join(c.configDir, ConsulConfigFile), binary},
		probe:      []string{"consul", binary, c.httpAddr},
		endpoint:   c.httpAddr,
		what:       "the agent",
		missing:    "the consul binary " + binary + " is not on the host; install it first (installConsul)",
		noManager:  "cannot start consul: the host has neither systemd nor the clusterflow node supervisor (/etc/clusterflow/services.d)",
		notReady:   consulNotReady,
		ownUnit:    c.unitFile,
		writeUnit: func(ctx context.Context, op *hostOp) (bool, error) {
			r, err := op.run(ctx, "unit", consulUnitScript.cmd(c.unitFile, unitText))
			if err != nil {
				return false, err
			}
			if r.ExitCode != 0 {
				return false, remoteFailed(op.host, "writing %s failed (exit %d): %s", c.unitFile, r.ExitCode, lastOutputLine(r.Stderr))
			}
			return strings.Contains(r.Stdout, "changed"), nil
		},
	}
}

// StartConsul makes sure the agent runs and starts at boot (see daemon.plan):
//
//   - with systemd (/run/systemd/system exists): the packaged consul unit when there
//     is one, else a unit clusterflow writes; systemctl enable, then start (or
//     restart when req.Restart);
//   - else, on hosts with the clusterflow node supervisor (the lab nodes): the
//     service file consul, through clusterflow-service when installed; the
//     supervisor restarts the agent when it exits and at every boot.
//
// Hosts with neither fail with a non-retryable ErrRemoteFailed. Then it waits up to
// a minute until the agent answers on its HTTP API. An agent that was running, with
// no restart asked for and no configuration or binary newer than itself, is left
// alone.
func (c *Consul) StartConsul(ctx context.Context, req StartConsulRequest) (StartConsulResult, error) {
	h := req.Host
	if !safeArg.MatchString(req.Binary) {
		return StartConsulResult{}, hostInvalid(h, "consul binary path %q must be absolute, of letters, digits and / . _ -", req.Binary)
	}
	op, done := c.begin(ctx, h)
	defer done()
	res, err := ensureRunning(ctx, op, c.agent(req.Binary), req.Restart)
	return StartConsulResult(res), err
}
