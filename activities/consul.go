package activities

import (
	"context"
	"time"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// The activities of the ConsulBootstrap procedure, one file each (consul_*.go): the
// gossip key on the worker, then on each host the consul binary, the agent's
// configuration and the running agent, and last the cluster as the agent's HTTP API
// reports it, reached through the SSH connection. Each activity checks before it
// acts, so a second run finds the work done and reports it unchanged.
//
// The gossip encryption key is a secret: it is made and read on the worker, written
// into the host's configuration file over SFTP, and never put in an activity's input
// or output, a heartbeat, a log line or an error message. Workflows see the key
// file's path and a key ID (a hash that identifies the key without revealing it).

// Paths and addresses on the hosts.
const (
	consulBinDir    = "/usr/local/bin" // file and url sources; apt installs /usr/bin/consul
	consulConfigDir = "/etc/consul.d"
	// ConsulConfigFile is the file clusterflow writes in the configuration directory;
	// other files there (the apt package's consul.hcl) are read by the agent too.
	ConsulConfigFile = "clusterflow.json"
	consulDataDir    = "/opt/consul"
	consulUnit       = "/etc/systemd/system/consul.service"
	// consulSourceFile records which release zip made /usr/local/bin/consul (url).
	consulSourceFile = "/var/lib/clusterflow/consul-source"
	// ConsulHTTPAddr is where agents serve their HTTP API: loopback only
	// (client_addr), reached from the worker through the SSH connection.
	ConsulHTTPAddr = "127.0.0.1:8500"
	// DefaultConsulAptRepo is HashiCorp's apt repository; a mirror has its layout.
	DefaultConsulAptRepo = "https://apt.releases.hashicorp.com"
	consulKeyring        = "/etc/apt/keyrings/hashicorp.asc"
	consulSourcesList    = "/etc/apt/sources.list.d/hashicorp.list"
)

// Consul holds the activities of the ConsulBootstrap procedure: EnsureGossipKey (on

// Consul holds the activities of the ConsulBootstrap procedure: EnsureGossipKey (on
// the worker), InstallConsul, ConfigureConsul, StartConsul and VerifyConsul.
type Consul struct {
	rem            typedRemote
	heartbeatEvery time.Duration
	lockRetryDelay time.Duration // NextRetryDelay of ErrPackageManagerBusy
	// verifyTimeout bounds VerifyConsul's wait for a healthy cluster; pollEvery is
	// the gap between two looks at the API.
	verifyTimeout time.Duration
	pollEvery     time.Duration
	// Paths on the host and the API address; tests point them elsewhere.
	binDir, configDir, dataDir, unitFile, sourceFile string
	httpAddr                                         string
}

// NewConsul returns the Consul activities, reaching hosts through r.
func NewConsul(r remote.Remote) *Consul {
	return &Consul{
		rem:            typedRemote{r},
		heartbeatEvery: defaultHeartbeat,
		lockRetryDelay: 15 * time.Second,
		verifyTimeout:  2 * time.Minute,
		pollEvery:      time.Second,
		binDir:         consulBinDir,
		configDir:      consulConfigDir,
		dataDir:        consulDataDir,
		unitFile:       consulUnit,
		sourceFile:     consulSourceFile,
		httpAddr:       ConsulHTTPAddr,
	}
}

// begin starts an activity on h (see beginOp).
func (c *Consul) begin(ctx context.Context, h remote.Host) (*hostOp, func()) {
	return beginOp(ctx, c.rem, h, c.heartbeatEvery)
}
