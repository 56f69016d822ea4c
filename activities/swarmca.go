package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// This file holds the activities of the RotateCA and CheckCertificates procedures,
// on the Swarm struct. They follow `docker swarm ca --rotate` (docker/cli
// cli/command/swarm/ca.go) and its progress rule (progress/root_rotation.go): a node
// is done when its certificate comes from the swarm's current issuer and it trusts
// the current root; the rotation is done when every node the swarm knows is, and the
// swarm no longer reports a rotation in progress. An operator-provided CA key is read
// from the worker's disk inside StartCARotation and sent to the engine only: it is
// never an input, a result, a heartbeat or a log line.

// Paths of a node's swarm certificates (the engine's data root is /var/lib/docker).
const (
	SwarmNodeCertFile = "/var/lib/docker/swarm/certificates/swarm-node.crt"
	SwarmRootCAFile   = "/var/lib/docker/swarm/certificates/swarm-root-ca.crt"
)

// minRootValidity is swarmkit's floor for a provided root (minRootExpiration).
const minRootValidity = 365 * 24 * time.Hour

// CAStatus is the swarm's root CA and where each node stands with it.
type CAStatus struct {
	// RootFingerprint is the sha256 of the root certificate the swarm trusts (DER,
	// as `openssl x509 -noout -fingerprint -sha256` prints it, lower-case hex
	// without colons). During a rotation it is still the old root's.
	RootFingerprint string    `json:"rootFingerprint"`
	RootNotAfter    time.Time `json:"rootNotAfter,omitzero"`
	// InProgress: the swarm reports a root rotation in progress.
	InProgress     bool               `json:"inProgress"`
	ForceRotate    uint64             `json:"forceRotate"`
	NodeCertExpiry playbooks.Duration `json:"nodeCertExpiry,omitempty"`
	Nodes          []CANode           `json:"nodes"`
	// Certs counts nodes whose certificate comes from the current issuer (during a
	// rotation: the new root's key), Roots nodes that trust the current root.
	Certs int `json:"certs"`
	Roots int `json:"roots"`
}

// CANode is one swarm node's TLS state as a manager reports it.
type CANode struct {
	ID       string `json:"id"`
	Hostname string `json:"hostname"`
	Addr     string `json:"addr"`
	Role     string `json:"role"`
	State    string `json:"state"` // ready, down, unknown, disconnected
	CertOK   bool   `json:"certOk"`
	RootOK   bool   `json:"rootOk"`
}

// Done reports whether the rotation is over: none in progress, and every node has a
// certificate from the current root and trusts it.
func (s CAStatus) Done() bool {
	return !s.InProgress && s.Certs == len(s.Nodes) && s.Roots == len(s.Nodes)
}

// Counts is the progress line: "TLS certificates 2/3 nodes, trust root 3/3".
func (s CAStatus) Counts() string {
	return fmt.Sprintf("TLS certificates %d/%d nodes, trust root %d/%d", s.Certs, len(s.Nodes), s.Roots, len(s.Nodes))
}

// HoldingUp names the nodes that are not done yet, with what they lack and their
// state when it is not ready: "slave02 (down: certificate, trust root)".
func (s CAStatus) HoldingUp() []string {
	var out []string
	for _, n := range s.Nodes {
		if n.CertOK && n.RootOK {
			continue
		}
		var lack []string
		if !n.CertOK {
			lack = append(lack, "certificate")
		}
		if !n.RootOK {
			lack = append(lack, "trust root")
		}
		what := strings.Join(lack, ", ")
		if n.State != string(swarm.NodeStateReady) {
			what = n.State + ": " + what
		}
		out = append(out, fmt.Sprintf("%s (%s)", n.Hostname, what))
	}
	return out
}

// DownHoldingUp names the nodes that are not done and not ready: the swarm waits
// for them for ever, so they must come back or be removed.
func (s CAStatus) DownHoldingUp() []string {
	var out []string
	for _, n := range s.Nodes {
		if (!n.CertOK || !n.RootOK) && n.State != string(swarm.NodeStateReady) {
			out = append(out, n.Hostname)
		}
	}
	return out
}

// key identifies what a watcher has seen: a change of any part wakes it.
func (s CAStatus) key() string {
	var b strings.Builder
	// Sprintf, not Fprintf to the builder: workflows call this (workflowcheck).
	b.WriteString(fmt.Sprintf("%s|%t|%d|%d|%d", s.RootFingerprint, s.InProgress, s.Certs, s.Roots, len(s.Nodes)))
	for _, n := range s.Nodes {
		b.WriteString(fmt.Sprintf("|%s:%s:%t:%t", n.ID, n.State, n.CertOK, n.RootOK))
	}
	return b.String()
}

// Key is the watcher's key of the status, for WatchCARotationRequest.Seen.
func (s CAStatus) Key() string { return s.key() }

// InspectSwarmCA reads the swarm's root CA and every node's TLS state.
func (s *Swarm) InspectSwarmCA(ctx context.Context, req SwarmManagerRequest) (CAStatus, error) {
	cli, err := s.rem.dockerAPI(req.Manager)
	if err != nil {
		return CAStatus{}, err
	}
	defer cli.Close()
	st, _, err := s.caStatus(ctx, req.Manager, cli)
	return st, err
}

func (s *Swarm) caStatus(ctx context.Context, m remote.Host, cli *client.Client) (CAStatus, swarm.Swarm, error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	sw, err := cli.SwarmInspect(actx)
	cancel()
	if err != nil {
		return CAStatus{}, sw, apiFailure(ctx, m, "read the swarm's root CA", err)
	}
	nodes, err := s.nodes(ctx, m, cli)
	if err != nil {
		return CAStatus{}, sw, err
	}
	return caStatusOf(sw, nodes), sw, nil
}

// caStatusOf applies the CLI's convergence rule to an inspected swarm and its nodes.
func caStatusOf(sw swarm.Swarm, nodes []swarm.Node) CAStatus {
	want := sw.TLSInfo
	st := CAStatus{
		InProgress:     sw.RootRotationInProgress,
		ForceRotate:    sw.Spec.CAConfig.ForceRotate,
		NodeCertExpiry: playbooks.Duration(sw.Spec.CAConfig.NodeCertExpiry),
		Nodes:          []CANode{},
	}
	st.RootFingerprint, st.RootNotAfter = pemFingerprint(want.TrustRoot)
	for _, n := range nodes {
		t := n.Description.TLSInfo
		cn := CANode{
			ID: n.ID, Hostname: n.Description.Hostname, Addr: n.Status.Addr,
			Role: string(n.Spec.Role), State: string(n.Status.State),
			CertOK: bytes.Equal(t.CertIssuerPublicKey, want.CertIssuerPublicKey) && bytes.Equal(t.CertIssuerSubject, want.CertIssuerSubject),
			RootOK: t.TrustRoot == want.TrustRoot,
		}
		if cn.CertOK {
			st.Certs++
		}
		if cn.RootOK {
			st.Roots++
		}
		st.Nodes = append(st.Nodes, cn)
	}
	return st
}

// pemFingerprint is the sha256 of the first certificate of a PEM text (of the text
// itself when it holds none), and that certificate's NotAfter.
func pemFingerprint(text string) (string, time.Time) {
	if text == "" {
		return "", time.Time{}
	}
	certs := parseCerts([]byte(text))
	if len(certs) == 0 {
		sum := sha256.Sum256([]byte(text))
		return hex.EncodeToString(sum[:]), time.Time{}
	}
	return certFingerprint(certs[0]), certs[0].NotAfter
}

func certFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// parseCerts returns the certificates of a PEM text, in order, skipping what does
// not parse.
func parseCerts(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, c)
		}
	}
}
