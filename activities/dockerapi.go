package activities

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"

	"github.com/clusterflow/clusterflow/playbooks"
)

// The Docker Engine API of a host is reached through its SSH connection: every HTTP
// connection of the Docker client is a direct-streamlocal channel to the engine's
// unix socket on the host. No TCP port of the engine is ever opened. The host's
// sshd must allow it: AllowStreamLocalForwarding yes, AllowTcpForwarding local (or
// yes) and no PermitOpen line.

// DockerSocket is the engine's unix socket on a host.
const DockerSocket = "/var/run/docker.sock"

// DockerAPI returns a client of h's Docker Engine API over h's pooled SSH
// connection. Each dial takes the pool's current connection, so the client keeps
// working after the pool reconnects. The client negotiates the API version with the
// engine (never pinned: Docker 29 refuses old versions, Debian's 20.10 new ones).
// Close it when done (that closes its idle channels, not the SSH connection).
//
// Group membership is read at login: a non-root login user added to the docker
// group after the pool connected does not have it on the pooled connection.
func DockerAPI(pool *Pool, h playbooks.Host) (*client.Client, error) {
	return dockerClient(DockerSocket, func(ctx context.Context) (net.Conn, error) {
		c, err := pool.Client(ctx, h)
		if err != nil {
			return nil, err
		}
		return c.DialContext(ctx, "unix", DockerSocket)
	})
}

// dockerClient makes a Docker client whose every connection is dial(). The unix://
// host keeps proxies out (the transport consults HTTP_PROXY only for tcp and http
// hosts) and sends the client's placeholder Host header; WithDialContext must come
// after WithHost, which installs a dialer of its own.
func dockerClient(socket string, dial func(ctx context.Context) (net.Conn, error)) (*client.Client, error) {
	return client.NewClientWithOpts(
		client.WithHost("unix://"+socket),
		client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }),
		client.WithAPIVersionNegotiation(),
	)
}

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
// checked over exec to say why.
func (d *Docker) VerifyDockerEngine(ctx context.Context, req DockerHostRequest) (EngineVersion, error) {
	h := req.Host
	op, done := d.begin(ctx, h)
	defer done()
	op.setPhase("api")

	var sc *ssh.Client
	var err error
	if h.User == "root" {
		sc, err = d.pool.Client(ctx, h)
	} else {
		sc, err = d.pool.dialHost(ctx, h)
		if err == nil {
			defer sc.Close()
		}
	}
	if err != nil {
		return EngineVersion{}, err
	}
	cli, err := dockerClient(d.dockerSocket, func(ctx context.Context) (net.Conn, error) {
		return sc.DialContext(ctx, "unix", d.dockerSocket)
	})
	if err != nil {
		return EngineVersion{}, hostInvalid(h, "docker client: %v", err)
	}
	defer cli.Close()

	vctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	v, err := cli.ServerVersion(vctx)
	if err != nil {
		if ctx.Err() != nil {
			return EngineVersion{}, ctx.Err()
		}
		return EngineVersion{}, d.apiError(ctx, h, sc, err)
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

// socketCheckScript reports, as the login user, whether the socket $1 exists and
// can be opened, and the user's groups.
const socketCheckScript = `if [ -S "$1" ]; then echo socket=yes; else echo socket=no; fi
if [ -r "$1" ] && [ -w "$1" ]; then echo access=yes; else echo access=no; fi
echo "groups=$(id -nG)"`

// apiError explains a failed API call. A blocked forward, a socket the user may
// not open and a missing socket all reach the client as the same "open failed", so
// the socket is checked over exec, on the same connection.
func (d *Docker) apiError(ctx context.Context, h playbooks.Host, sc *ssh.Client, apiErr error) error {
	var oce *ssh.OpenChannelError
	forwardRefused := errors.As(apiErr, &oce) || strings.Contains(apiErr.Error(), "open failed")

	st := map[string]string{}
	if sess, err := sc.NewSession(); err == nil {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		stop := context.AfterFunc(cctx, func() { sess.Close() })
		out, _ := sess.Output("/bin/sh -c " + shellQuote(socketCheckScript) + " clusterflow " + shellQuote(d.dockerSocket))
		stop()
		cancel()
		sess.Close()
		st = parseKeyValues(string(out))
	}
	switch {
	case st["socket"] == "no":
		return hostError(h, ErrEngineNotReady, true, "the engine API cannot be reached: there is no socket at %s (is the engine running?): %v", d.dockerSocket, apiErr)
	case st["access"] == "no":
		return remoteFailed(h, "login user %s may not open %s (groups: %s); add %s to installDocker.users, or log in as root", h.User, d.dockerSocket, st["groups"], h.User)
	case forwardRefused && st["access"] == "yes":
		return remoteFailed(h, "sshd refused to forward %s (%v): the host's sshd_config needs AllowStreamLocalForwarding yes and AllowTcpForwarding local (or yes), and no PermitOpen line", d.dockerSocket, apiErr)
	default:
		return hostError(h, ErrEngineNotReady, true, "the engine API over SSH did not answer: %v", apiErr)
	}
}
