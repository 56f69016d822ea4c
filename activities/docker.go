package activities

import (
	"context"
	"time"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// The activities of the InstallDocker procedure, one file each (docker_*.go). Each
// one checks the host first and acts only when something is missing, so that a
// retry (after a lost connection, or on a new worker after the old one died) and a
// second run of the playbook find the work done and report it unchanged.

// Docker engine package names.
const (
	pkgDistroEngine = "docker.io"
	pkgRepoEngine   = "docker-ce"
	pkgRepoCLI      = "docker-ce-cli"
	pkgRepoRuntime  = "containerd.io"
)

// Paths on the hosts.
const (
	// DefaultDockerMirror is where Docker's apt repositories live; a mirror has the
	// same layout (MIRROR/debian, MIRROR/ubuntu).
	DefaultDockerMirror = "https://download.docker.com/linux"
	dockerKeyring       = "/etc/apt/keyrings/docker.asc"
	dockerSourcesList   = "/etc/apt/sources.list.d/docker.list"
	// offlineStaging is where offline bundles are uploaded, relative to the login
	// user's home directory (SFTP writes as that user, also on sudo hosts).
	offlineStaging = ".cache/clusterflow/docker-offline"
)

// DockerSocket is the engine's unix socket on a host.
const DockerSocket = remote.DockerSocket

// Docker installs, configures and starts Docker engines on hosts. Its exported
// methods are activities: DetectOS, InstallDockerPackages, ConfigureDockerDaemon,
// AddDockerUsers, StartDockerEngine and VerifyDockerEngine.
type Docker struct {
	rem            typedRemote
	heartbeatEvery time.Duration
	// lockRetryDelay is the NextRetryDelay of an ErrPackageManagerBusy error.
	lockRetryDelay time.Duration
	// Paths on the host; tests point them into a temporary directory.
	daemonJSON   string
	dockerSocket string
}

// NewDocker returns the Docker activities, reaching hosts through r.
func NewDocker(r remote.Remote) *Docker {
	return &Docker{
		rem:            typedRemote{r},
		heartbeatEvery: defaultHeartbeat,
		lockRetryDelay: 15 * time.Second,
		daemonJSON:     "/etc/docker/daemon.json",
		dockerSocket:   DockerSocket,
	}
}

// DockerHostRequest names the host of an activity that needs nothing else.
type DockerHostRequest struct {
	Host remote.Host `json:"host"`
}

// begin starts an activity on h (see beginOp).
func (d *Docker) begin(ctx context.Context, h remote.Host) (*hostOp, func()) {
	return beginOp(ctx, d.rem, h, d.heartbeatEvery)
}

// apt is apt and dpkg on op's host.
func (d *Docker) apt(op *hostOp) apt { return apt{op: op, retryDelay: d.lockRetryDelay} }
