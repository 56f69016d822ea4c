package activities

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// EngineVersion is what VerifyDockerEngine read from the engine's API.
type EngineVersion struct {
	Version string `json:"version"` // engine version, e.g. 20.10.24+dfsg1
	// APIVersion is the API version the client negotiated with the engine.
	APIVersion    string `json:"apiVersion"`
	MaxAPIVersion string `json:"maxApiVersion,omitempty"` // the engine's newest
	MinAPIVersion string `json:"minApiVersion,omitempty"`
	Os            string `json:"os,omitempty"`
	Arch          string `json:"arch,omitempty"`
	KernelVersion string `json:"kernelVersion,omitempty"`
}

// apiTimeout bounds one API exchange with the engine.
const apiTimeout = 30 * time.Second

// VerifyDockerEngine asks the engine of req.Host for its version through the Docker
// API over SSH. Root logins use the pooled connection; other users get a fresh
// connection of their own, so that a docker group membership added in this run
// counts. When the API cannot be reached, the login user's access to the socket is
// checked over exec, on the same connection, to say why.
func (d *Docker) VerifyDockerEngine(ctx context.Context, req DockerHostRequest) (EngineVersion, error) {
	h := req.Host
	op, done := d.begin(ctx, h)
	defer done()
	op.setPhase("api")

	// As the login user, never through sudo: its own access is what is checked.
	login := h
	login.Sudo = false
	dial := func(ctx context.Context) (net.Conn, error) { return d.rem.r.DialUnix(ctx, h, d.dockerSocket) }
	check := func(ctx context.Context, c remote.Cmd) (remote.Result, error) { return d.rem.run(ctx, login, c) }
	if h.User != "root" {
		conn, err := d.rem.dial(ctx, login)
		if err != nil {
			return EngineVersion{}, err
		}
		defer conn.Close()
		dial = func(ctx context.Context) (net.Conn, error) { return conn.c.DialUnix(ctx, d.dockerSocket) }
		check = conn.run
	}
	cli, err := remote.DockerClient(d.dockerSocket, dial)
	if err != nil {
		return EngineVersion{}, hostInvalid(h, "docker client: %v", err)
	}
	defer cli.Close()

	vctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	v, err := cli.ServerVersion(vctx)
	switch {
	case ctx.Err() != nil:
		return EngineVersion{}, ctx.Err()
	case err != nil:
		return EngineVersion{}, d.apiError(ctx, h, check, err)
	}
	return EngineVersion{
		Version:       v.Version,
		APIVersion:    cli.ClientVersion(),
		MaxAPIVersion: v.APIVersion,
		MinAPIVersion: v.MinAPIVersion,
		Os:            v.Os,
		Arch:          v.Arch,
		KernelVersion: v.KernelVersion,
	}, nil
}

// apiError explains a failed API call. The connection failing is typed already. A
// blocked forward, a socket the user may not open and a missing socket all reach
// the client as the same "open failed", so the socket is checked over exec
// (docker-socket.sh).
func (d *Docker) apiError(ctx context.Context, h remote.Host, check func(context.Context, remote.Cmd) (remote.Result, error), apiErr error) error {
	if _, ok := remote.KindOf(apiErr); ok {
		return typed(apiErr)
	}
	refused, _ := remote.ChannelRefused(apiErr)
	forwardRefused := refused || strings.Contains(apiErr.Error(), "open failed")

	st := map[string]string{}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	if r, err := check(cctx, dockerSocketScript.cmd(d.dockerSocket)); err == nil {
		st = parseKeyValues(r.Stdout)
	}
	cancel()
	switch {
	case st["socket"] == "no":
		return engineNotReady(h, "the engine API cannot be reached: there is no socket at %s (is the engine running?): %v", d.dockerSocket, apiErr)
	case st["access"] == "no":
		return remoteFailed(h, "login user %s may not open %s (groups: %s); add %s to installDocker.users, or log in as root", h.User, d.dockerSocket, st["groups"], h.User)
	case forwardRefused && st["access"] == "yes":
		return remoteFailed(h, "sshd refused to forward %s (%v): the host's sshd_config needs AllowStreamLocalForwarding yes and AllowTcpForwarding local (or yes), and no PermitOpen line", d.dockerSocket, apiErr)
	default:
		return engineNotReady(h, "the engine API over SSH did not answer: %v", apiErr)
	}
}
