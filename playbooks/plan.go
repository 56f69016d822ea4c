package playbooks

import (
	"encoding/json"
	"fmt"
	"time"
)

// The types in this file are the resolved form of a playbook: what the starter (or the
// LoadPlaybook activity) hands to the RunPlaybook workflow, and what activities receive.
// They travel as JSON in Temporal payloads and so land in workflow history: they carry
// paths and names only, never key material or passwords.

// APIVersion is the only playbook format this package reads.
const APIVersion = "clusterflow.io/v1"

// Step kinds: a closed list. Later procedures add theirs here.
const (
	KindRun            = "run"
	KindUpload         = "upload"
	KindDistributeKeys = "distributeKeys" // runs the DistributeKeys workflow
	KindInstallDocker  = "installDocker"  // runs the InstallDocker workflow
)

// Docker installation sources.
const (
	DockerFromDistro  = "distro"      // the distribution's docker.io package
	DockerFromRepo    = "docker-repo" // Docker's apt repository (or a mirror of it)
	DockerFromOffline = "offline"     // .deb files uploaded from the worker, no network
)

// Host key policies.
const (
	HostKeyStrict = "strict" // host must already be in known_hosts (the default)
	HostKeyTOFU   = "tofu"   // first key seen is pinned in known_hosts, enforced afterwards
)

// Plan is a validated playbook with its inventory resolved.
type Plan struct {
	Name    string `json:"name"`              // metadata.name
	Cluster string `json:"cluster,omitempty"` // metadata.cluster
	Source  string `json:"source,omitempty"`  // file the plan came from, for messages
	Hosts   []Host `json:"hosts"`             // every inventory host, in file order
	Steps   []Step `json:"steps"`
	// Vars are playbook variables given to upload templates. Not for secrets.
	Vars map[string]string `json:"vars,omitempty"`
}

// Host is one inventory host after defaults are applied.
type Host struct {
	Name           string   `json:"name"`
	Address        string   `json:"address"`
	Port           int      `json:"port"`
	User           string   `json:"user"`
	IdentityFile   string   `json:"identityFile,omitempty"` // absolute path on the worker
	UseAgent       bool     `json:"useAgent,omitempty"`     // SSH_AUTH_SOCK of the worker
	Sudo           bool     `json:"sudo,omitempty"`         // run commands through sudo -n
	Groups         []string `json:"groups,omitempty"`
	KnownHostsFile string   `json:"knownHostsFile"` // absolute path on the worker
	HostKeyPolicy  string   `json:"hostKeyPolicy"`  // HostKeyStrict or HostKeyTOFU
	// Jump names the inventory host to connect through; Via is that host, resolved.
	Jump string `json:"jump,omitempty"`
	Via  *Host  `json:"via,omitempty"`
}

// Step is one playbook step with its target hosts resolved to names.
type Step struct {
	Name           string   `json:"name"`
	Kind           string   `json:"kind"`
	Hosts          []string `json:"hosts"`          // host names, in inventory order
	Parallel       int      `json:"parallel"`       // hosts at once; >= 1
	MaxFailPercent int      `json:"maxFailPercent"` // 0..100; failures above it stop the run
	Timeout        Duration `json:"timeout"`        // per host attempt
	Attempts       int      `json:"attempts"`       // tries per host for retryable errors; >= 1

	Run            *RunStep            `json:"run,omitempty"`
	Upload         *UploadStep         `json:"upload,omitempty"`
	DistributeKeys *DistributeKeysStep `json:"distributeKeys,omitempty"`
	InstallDocker  *InstallDockerStep  `json:"installDocker,omitempty"`
}

// DistributeKeysStep gives the step's hosts SSH access: the operator's cluster key
// (and with Mesh, every host's own key) in authorized_keys, and every host's host key
// in every known_hosts. Only paths and public keys travel; private keys stay where
// they are made.
type DistributeKeysStep struct {
	// ClusterKey is the operator's cluster private key, an absolute path on the
	// worker; generated (ed25519, 0600) on first use, public half at ClusterKey+".pub".
	ClusterKey string `json:"clusterKey"`
	// User whose ~/.ssh is managed on the hosts; default: the login user.
	User string `json:"user,omitempty"`
	// Mesh: each host gets a key pair of its own, trusted by all the others.
	Mesh bool `json:"mesh,omitempty"`
	// Rotate replaces the cluster key: a new pair is added, verified, then the old
	// public key is removed from every host.
	Rotate bool `json:"rotate,omitempty"`
}

// InstallDockerStep installs and starts a Docker engine on the step's hosts.
type InstallDockerStep struct {
	Source  string `json:"source"`            // DockerFromDistro (default), DockerFromRepo, DockerFromOffline
	Version string `json:"version,omitempty"` // apt version pin of the engine package; empty: the newest
	// Mirror replaces https://download.docker.com/linux for DockerFromRepo.
	Mirror string `json:"mirror,omitempty"`
	// Packages is a directory of .deb files on the worker (absolute path) for
	// DockerFromOffline; a SHA256SUMS file in it, when present, is checked.
	Packages string `json:"packages,omitempty"`
	// DaemonConfig is merged into /etc/docker/daemon.json (top-level keys replaced,
	// other keys kept). Not for secrets.
	DaemonConfig map[string]any `json:"daemonConfig,omitempty"`
	// Users are added to the docker group.
	Users []string `json:"users,omitempty"`
}

// RunStep runs one command, given as an argv list, on each target host.
type RunStep struct {
	Command []string          `json:"command"`
	Creates string            `json:"creates,omitempty"` // skip when this remote path exists
	Unless  []string          `json:"unless,omitempty"`  // skip when this command exits 0
	Env     map[string]string `json:"env,omitempty"`
	Dir     string            `json:"dir,omitempty"`
	// ExitCodes that count as success; default [0].
	ExitCodes []int `json:"exitCodes,omitempty"`
}

// UploadStep copies a local file (optionally a Go template) to each target host.
type UploadStep struct {
	Src      string `json:"src"` // absolute path on the worker
	Template bool   `json:"template,omitempty"`
	Dest     string `json:"dest"`
	Mode     uint32 `json:"mode"` // permission bits, default 0644
	Owner    string `json:"owner,omitempty"`
	Group    string `json:"group,omitempty"`
}

// HostByName returns the named host.
func (p *Plan) HostByName(name string) (Host, bool) {
	for _, h := range p.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// Duration is a time.Duration that reads and writes as "90s", "5m", so that JSON
// inputs and workflow history stay readable in the Web UI.
type Duration time.Duration

// Std returns the value as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string, or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("duration must be a string such as \"90s\": %w", err)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
