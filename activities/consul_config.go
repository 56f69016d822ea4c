package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path"
	"strings"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/rules"
	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// ConsulConfigRequest is the input of ConfigureConsul: the agent's settings, and
// where the worker keeps the gossip key (never the key itself).
type ConsulConfigRequest struct {
	Host       remote.Host `json:"host"`
	Server     bool        `json:"server"`
	Datacenter string      `json:"datacenter"`
	// BootstrapExpect is the number of servers (servers only).
	BootstrapExpect int `json:"bootstrapExpect,omitempty"`
	// RetryJoin are the servers' addresses, as the inventory gives them.
	RetryJoin []string `json:"retryJoin"`
	// BindInterface: bind to this interface's address; empty: the host's
	// inventory address (a DNS name is resolved on the host).
	BindInterface string `json:"bindInterface,omitempty"`
	// GossipKeyFile is the key file on the worker; KeyID is the ID EnsureGossipKey
	// returned, which the file must still match.
	GossipKeyFile string `json:"gossipKeyFile"`
	KeyID         string `json:"keyId"`
}

// ConsulConfigResult says what ConfigureConsul did.
type ConsulConfigResult struct {
	Changed bool   `json:"changed"`
	Path    string `json:"path"`
	// BindAddr is the bind_addr written: an address, or a go-sockaddr template.
	BindAddr string `json:"bindAddr"`
}

// agentConfig is the JSON written to the configuration directory. Field order is
// the file's key order.
type agentConfig struct {
	Datacenter      string   `json:"datacenter"`
	NodeName        string   `json:"node_name"`
	DataDir         string   `json:"data_dir"`
	Server          bool     `json:"server"`
	BootstrapExpect int      `json:"bootstrap_expect,omitempty"`
	BindAddr        string   `json:"bind_addr"`
	ClientAddr      string   `json:"client_addr"`
	RetryJoin       []string `json:"retry_join"`
	Encrypt         string   `json:"encrypt"`
}

// ConfigureConsul writes the agent's configuration, /etc/consul.d/clusterflow.json
// (mode 0640, root and the consul group or root), when its content differs from
// what the host has: node name (the inventory name), datacenter, data_dir
// /opt/consul, server with bootstrap_expect or client, bind_addr (the inventory
// address, or the interface's address through a go-sockaddr template),
// client_addr 127.0.0.1, retry_join (the servers) and the gossip key, read here
// from the worker's key file. The file goes over SFTP (temporary file, rename) and
// is compared by SHA-256, so the key is never sent when it is there already.
//
// The agent reads encrypt only until it has a keyring of its own (data_dir/serf):
// replacing the key file later changes this file but not a running cluster's key
// (that takes `consul keyring`).
func (c *Consul) ConfigureConsul(ctx context.Context, req ConsulConfigRequest) (ConsulConfigResult, error) {
	h := req.Host
	res := ConsulConfigResult{Path: path.Join(c.configDir, ConsulConfigFile)}
	switch {
	case req.Datacenter == "":
		return res, hostInvalid(h, "datacenter is empty")
	case len(req.RetryJoin) == 0:
		return res, hostInvalid(h, "retryJoin is empty: name at least one server")
	case req.Server && req.BootstrapExpect < 1:
		return res, hostInvalid(h, "a server needs bootstrapExpect of at least 1")
	case req.BindInterface != "" && !rules.InterfaceName(req.BindInterface):
		return res, hostInvalid(h, "bindInterface %q is not an interface name", req.BindInterface)
	}
	if err := checkGossipKeyPath(req.GossipKeyFile); err != nil {
		return res, err
	}
	if err := c.rem.workerFile("gossipKeyFile", req.GossipKeyFile, workerfs.Content); err != nil {
		return res, err
	}
	key, id, err := readGossipKey(req.GossipKeyFile)
	if err != nil {
		return res, err
	}
	if id != req.KeyID {
		return res, gossipKeyMismatch(h, "the gossip key in %s on this worker is %s, not %s as when the run started: was the file replaced, or do workers on different machines have different files?",
			req.GossipKeyFile, id, req.KeyID)
	}
	op, done := c.begin(ctx, h)
	defer done()

	// Step 1. Directories, the file's group, the bind address.
	resolve := ""
	if _, err := netip.ParseAddr(h.Address); err != nil && req.BindInterface == "" {
		resolve = h.Address
	}
	r, err := op.run(ctx, "prepare", consulPrepareScript.cmd(c.configDir, c.dataDir, resolve))
	if err != nil {
		return res, err
	}
	if r.ExitCode != 0 {
		return res, remoteFailed(h, "preparing %s and %s failed (exit %d): %s", c.configDir, c.dataDir, r.ExitCode, lastOutputLine(r.Stderr))
	}
	st := parseKeyValues(r.Stdout)
	if strings.Contains(r.Stdout, "created=yes") {
		op.acting("prepare")
	}
	switch {
	case req.BindInterface != "":
		res.BindAddr = fmt.Sprintf(`{{ GetInterfaceIP %q }}`, req.BindInterface)
	case resolve == "":
		res.BindAddr = h.Address
	default:
		if _, err := netip.ParseAddr(st["bind"]); err != nil {
			return res, remoteFailed(h, "%s does not resolve to an address on the host (%q); give the address in the inventory, or bindInterface", resolve, st["bind"])
		}
		res.BindAddr = st["bind"]
	}

	// Step 2. The file, written only when its content differs.
	cfg := agentConfig{
		Datacenter: req.Datacenter, NodeName: h.Name, DataDir: c.dataDir, Server: req.Server,
		BindAddr: res.BindAddr, ClientAddr: "127.0.0.1", RetryJoin: req.RetryJoin, Encrypt: key,
	}
	if req.Server {
		cfg.BootstrapExpect = req.BootstrapExpect
	}
	content, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return res, hostInvalid(h, "encoding the configuration: %v", err)
	}
	content = append(content, '\n')
	want := wantData(res.Path, content, remote.Attrs{Mode: 0o640, Owner: "root", Group: st["group"]})
	want.secret = true // it holds the gossip key
	changed, _, err := ensureFile(ctx, c.rem, h, want, func(phase string) {
		if phase == "upload" {
			op.acting("write")
			return
		}
		op.setPhase(phase)
	}, nil)
	res.Changed = changed || op.changedSoFar()
	return res, err
}
