package remote

import (
	"context"
	"net"

	"github.com/docker/docker/client"
)

// The Docker Engine API of a host is reached through its SSH connection: every HTTP
// connection of the Docker client is a direct-streamlocal channel to the engine's
// unix socket on the host. No TCP port of the engine is ever opened. The host's
// sshd must allow it: AllowStreamLocalForwarding yes, AllowTcpForwarding local (or
// yes) and no PermitOpen line.

// DockerSocket is the engine's unix socket on a host.
const DockerSocket = "/var/run/docker.sock"

// DockerAPI returns a client of h's Docker Engine API at socket, over d (the pool:
// each dial takes the pool's current connection, so the client keeps working after
// the pool reconnects). Close it when done (that closes its idle channels, not the
// SSH connection).
//
// Group membership is read at login: a non-root login user added to the docker
// group after the pool connected does not have it on the pooled connection (a
// Conn from Dial does).
func DockerAPI(d Dialer, h Host, socket string) (*client.Client, error) {
	return DockerClient(socket, func(ctx context.Context) (net.Conn, error) { return d.DialUnix(ctx, h, socket) })
}

// DockerClient makes a Docker client whose every connection is dial(). It
// negotiates the API version with the engine (never pinned: Docker 29 refuses old
// versions, Debian's 20.10 new ones). The unix:// host keeps proxies out (the
// transport consults HTTP_PROXY only for tcp and http hosts) and sends the
// client's placeholder Host header; WithDialContext must come after WithHost,
// which installs a dialer of its own.
func DockerClient(socket string, dial func(ctx context.Context) (net.Conn, error)) (*client.Client, error) {
	return client.NewClientWithOpts(
		client.WithHost("unix://"+socket),
		client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }),
		client.WithAPIVersionNegotiation(),
	)
}
