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

	KindSwarmInit = "swarmInit" // runs the SwarmInit workflow
	// Node operations run the SwarmNodes workflow, one node at a time.
	KindPromote    = "promote"
	KindDemote     = "demote"
	KindDrain      = "drain"
	KindActivate   = "activate"
	KindRemoveNode = "removeNode"

	KindConsulBootstrap = "consulBootstrap" // runs the ConsulBootstrap workflow

	KindRotateCA          = "rotateCA"          // runs the RotateCA workflow
	KindCheckCertificates = "checkCertificates" // runs the CheckCertificates workflow

	// Service kinds run the DeployService workflow.
	KindDeployService = "deployService" // create the service, or update it
	KindUpdateService = "updateService" // update a service that exists

	// KindRollingNodeUpgrade runs the RollingNodeUpgrade workflow: the step's nodes'
	// engines are upgraded batch by batch, each node drained first.
	KindRollingNodeUpgrade = "rollingNodeUpgrade"

	// KindDeployStack runs the DeployStack workflow: a stack from Compose files.
	KindDeployStack = "deployStack"
	// KindBuildImage runs the BuildImage workflow: an image built on one of the
	// step's hosts from a build context on the worker, then loaded into the others.
	KindBuildImage = "buildImage"

	// Teardown kinds run the Teardown workflow. Removing what is not there is
	// unchanged.
	KindRemoveService = "removeService"
	KindRemoveStack   = "removeStack"
	KindRemoveNetwork = "removeNetwork"
	KindRemoveVolume  = "removeVolume" // on each of the step's hosts
)

// What checkCertificates does when a certificate has less than minValidity left.
const (
	CertActionFail   = "fail"   // the step fails, naming the nodes (the default)
	CertActionRotate = "rotate" // a root CA rotation (RotateCA) renews every node's certificate
)

// Consul binary sources.
const (
	ConsulFromFile = "file" // a binary on the worker's side, uploaded over SFTP, sha256 checked
	ConsulFromURL  = "url"  // a release zip downloaded by the host itself, sha256 checked
	ConsulFromApt  = "apt"  // HashiCorp's apt repository (or a mirror), consul package
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

// Step is one playbook step with its target hosts resolved to names. The comments of
// Parallel, Timeout and Attempts say what they do for run and upload; for the other
// kinds, or that a kind refuses a value other than the default, see fieldUses
// (fielduse.go).
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
	SwarmInit      *SwarmInitStep      `json:"swarmInit,omitempty"`
	// Node is set for the node operations: promote, demote, drain, activate, removeNode.
	Node   *NodeStep   `json:"node,omitempty"`
	Consul *ConsulStep `json:"consul,omitempty"`
	// RotateCA is set for kind rotateCA.
	RotateCA *RotateCAStep `json:"rotateCA,omitempty"`
	// CheckCertificates is set for kind checkCertificates.
	CheckCertificates *CheckCertificatesStep `json:"checkCertificates,omitempty"`
	// Service is set for kinds deployService and updateService.
	Service *ServiceStep `json:"service,omitempty"`
	// Upgrade is set for kind rollingNodeUpgrade.
	Upgrade *RollingUpgradeStep `json:"upgrade,omitempty"`
	// Stack is set for kind deployStack.
	Stack *StackStep `json:"stack,omitempty"`
	// BuildImage is set for kind buildImage.
	BuildImage *BuildImageStep `json:"buildImage,omitempty"`
	// Remove is set for the teardown kinds: removeService, removeStack,
	// removeNetwork, removeVolume.
	Remove *RemoveStep `json:"remove,omitempty"`
}

// RotateCAStep rotates the swarm's root CA, like `docker swarm ca --rotate`, and
// follows the rotation until every node has a certificate from the new root and
// trusts it. The step's hosts are the nodes whose outcome is reported; the swarm
// rotates every node it knows, listed or not.
type RotateCAStep struct {
	// Manager names the host whose engine is asked; default: the first host of
	// the inventory whose engine is a reachable manager.
	Manager string `json:"manager,omitempty"`
	// CACert and CAKey are an operator-provided root CA (PEM files on the worker's
	// side, absolute paths), read by the activity that starts the rotation: the
	// key never travels through Temporal. Neither: swarm generates a new root.
	CACert string `json:"caCert,omitempty"`
	CAKey  string `json:"caKey,omitempty"`
	// NodeCertExpiry sets the validity of node certificates (swarm's default is
	// 90 days); 0 leaves it as it is. The rotation issues certificates with it.
	NodeCertExpiry Duration `json:"nodeCertExpiry,omitempty"`
	// RotateWorkerToken and RotateManagerToken ask for new join tokens in the same
	// update. (A new root changes both tokens anyway once the rotation ends.)
	RotateWorkerToken  bool `json:"rotateWorkerToken,omitempty"`
	RotateManagerToken bool `json:"rotateManagerToken,omitempty"`
}

// CheckCertificatesStep reads every node's TLS certificate and the swarm's root
// CA, and acts when one has less than MinValidity left.
type CheckCertificatesStep struct {
	// Manager: as RotateCAStep.Manager.
	Manager string `json:"manager,omitempty"`
	// MinValidity is the least remaining validity accepted; default 720h (30 days).
	MinValidity Duration `json:"minValidity"`
	// Action below MinValidity: CertActionFail (default) or CertActionRotate.
	Action string `json:"action"`
	// Rotate holds the rotation's settings for CertActionRotate (nodeCertExpiry).
	Rotate *RotateCAStep `json:"rotate,omitempty"`
}

// SwarmInitStep forms (or completes) a swarm on the step's hosts: the first manager
// initialises it unless a swarm exists, the other hosts join, roles are promoted or
// demoted to match Managers, labels are set and overlay networks created. Join
// tokens are read and used inside one activity: they never travel.
type SwarmInitStep struct {
	// Managers are the hosts (names, among the step's hosts) that must be managers;
	// the first one initialises the swarm. The others are workers. Default: the
	// step's first host.
	Managers []string `json:"managers"`
	// AdvertiseAddr: "" (the engine chooses; several candidates are an error that
	// names them), "address" (each host's inventory address), an interface name
	// (eth1), or an IP address (for the first manager only; the others choose).
	AdvertiseAddr string `json:"advertiseAddr,omitempty"`
	// ListenAddr is where managers listen for the swarm; default 0.0.0.0:2377.
	ListenAddr string `json:"listenAddr,omitempty"`
	// DataPathAddr: as AdvertiseAddr, for the data (VXLAN) traffic; default: the same.
	DataPathAddr string `json:"dataPathAddr,omitempty"`
	// Labels are node labels by host name, set on the swarm node.
	Labels map[string]map[string]string `json:"labels,omitempty"`
	// Networks are overlay networks to create (existing ones are checked, not changed).
	Networks []OverlayNetwork `json:"networks,omitempty"`
}

// OverlayNetwork is a swarm-scoped overlay network.
type OverlayNetwork struct {
	Name       string            `json:"name"`
	Attachable bool              `json:"attachable,omitempty"`
	Encrypted  bool              `json:"encrypted,omitempty"` // IPsec between nodes
	Subnet     string            `json:"subnet,omitempty"`    // CIDR; default the engine's pool
	Labels     map[string]string `json:"labels,omitempty"`
}

// NodeStep is an operation on the swarm nodes of the step's hosts (step kinds
// promote, demote, drain, activate, removeNode), done one node at a time through a
// manager. An operation that would leave fewer reachable managers than Raft quorum
// needs is refused.
type NodeStep struct {
	Op string `json:"op"` // the step kind
	// Manager names the host whose engine is asked; default: the first host of the
	// inventory, not among the step's hosts when possible, whose engine is a
	// reachable manager.
	Manager string `json:"manager,omitempty"`
	// Force (removeNode): remove a node that is down and cannot leave by itself.
	Force bool `json:"force,omitempty"`
}

// ConsulStep installs and starts Consul agents on the step's hosts and checks the
// cluster through the HTTP API, reached over SSH.
type ConsulStep struct {
	// Servers are the hosts (names, among the step's hosts) that run servers; the
	// others run clients. Default: all the step's hosts.
	Servers []string `json:"servers"`
	Source  string   `json:"source"` // ConsulFromFile (default), ConsulFromURL, ConsulFromApt
	// Binary is the consul executable on the worker's side (absolute path), for
	// ConsulFromFile.
	Binary string `json:"binary,omitempty"`
	// SHA256 of the binary (file) or of the release zip (url), hex.
	SHA256 string `json:"sha256,omitempty"`
	// URL of a release zip (url), or of the apt repository (apt; default
	// HashiCorp's).
	URL     string `json:"url,omitempty"`
	Version string `json:"version,omitempty"` // apt version pin; for messages otherwise
	// Datacenter, default dc1.
	Datacenter string `json:"datacenter"`
	// GossipKeyFile is where the gossip encryption key is kept on the worker's side
	// (absolute path): generated on first use, 0600, never sent through Temporal.
	GossipKeyFile string `json:"gossipKeyFile"`
	// BindInterface: the agent binds to this interface's address; default the
	// host's inventory address.
	BindInterface string `json:"bindInterface,omitempty"`
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
