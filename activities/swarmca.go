package activities

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"go.temporal.io/sdk/activity"

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
	cli, err := s.api(req.Manager)
	if err != nil {
		return CAStatus{}, err
	}
	defer cli.Close()
	st, _, err := s.caStatus(ctx, req.Manager, cli)
	return st, err
}

func (s *Swarm) caStatus(ctx context.Context, m playbooks.Host, cli *client.Client) (CAStatus, swarm.Swarm, error) {
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

// StartCARotationRequest starts a root CA rotation through Manager.
type StartCARotationRequest struct {
	Manager playbooks.Host `json:"manager"`
	// OldRoot and ForceRotate are what InspectSwarmCA read before: the rotation
	// sets ForceRotate+1. An attempt that finds the swarm past that point (a
	// rotation in progress, another root, ForceRotate already there) has nothing
	// to do: it was started by an earlier attempt, or by someone else.
	OldRoot     string `json:"oldRoot"`
	ForceRotate uint64 `json:"forceRotate"`
	// CACert and CAKey: an operator-provided root, PEM files on the worker's side.
	CACert string `json:"caCert,omitempty"`
	CAKey  string `json:"caKey,omitempty"`
	// NodeCertExpiry, when set, becomes the swarm's node certificate validity.
	NodeCertExpiry     playbooks.Duration `json:"nodeCertExpiry,omitempty"`
	RotateWorkerToken  bool               `json:"rotateWorkerToken,omitempty"`
	RotateManagerToken bool               `json:"rotateManagerToken,omitempty"`
}

// CARotationStart is what StartCARotation found or did.
type CARotationStart struct {
	// Started: this attempt updated the swarm. Otherwise the rotation had been
	// started already (Message says by whom, as far as can be told).
	Started bool     `json:"started"`
	Message string   `json:"message"`
	Status  CAStatus `json:"status"`
	// NewRoot is the provided root's fingerprint (a generated root is known only
	// when the rotation ends).
	NewRoot string `json:"newRoot,omitempty"`
}

// StartCARotation starts a root CA rotation unless one is in progress or this
// request's rotation has happened already. A provided CA is read here, checked
// (a CA certificate, valid for a year at least, the key its own) and sent to the
// engine only.
func (s *Swarm) StartCARotation(ctx context.Context, req StartCARotationRequest) (CARotationStart, error) {
	m := req.Manager
	var signing *signingCA
	if req.CACert != "" || req.CAKey != "" {
		var err error
		if signing, err = loadSigningCA(req.CACert, req.CAKey, time.Now()); err != nil {
			return CARotationStart{}, invalidInput(err.Error())
		}
	}
	cli, err := s.api(m)
	if err != nil {
		return CARotationStart{}, err
	}
	defer cli.Close()
	for attempt := 0; ; attempt++ {
		st, sw, err := s.caStatus(ctx, m, cli)
		if err != nil {
			return CARotationStart{}, err
		}
		res := CARotationStart{Status: st}
		if signing != nil {
			res.NewRoot = signing.fingerprint
		}
		if msg := rotationStarted(st, req, signing); msg != "" {
			res.Message = msg
			return res, nil
		}
		spec := sw.Spec
		spec.CAConfig.SigningCAKey = "" // redacted on inspect; set below when provided
		spec.CAConfig.SigningCACert = ""
		did := []string{}
		if signing != nil {
			spec.CAConfig.SigningCACert, spec.CAConfig.SigningCAKey = signing.cert, signing.key
			did = append(did, "rotation to the provided root "+short(signing.fingerprint)+" started")
		} else {
			spec.CAConfig.ForceRotate = req.ForceRotate + 1
			did = append(did, fmt.Sprintf("rotation to a new generated root started (ForceRotate %d)", spec.CAConfig.ForceRotate))
		}
		if req.NodeCertExpiry > 0 {
			spec.CAConfig.NodeCertExpiry = req.NodeCertExpiry.Std()
			did = append(did, "node certificates valid "+req.NodeCertExpiry.String())
		}
		flags := swarm.UpdateFlags{RotateWorkerToken: req.RotateWorkerToken, RotateManagerToken: req.RotateManagerToken}
		if flags.RotateWorkerToken {
			did = append(did, "worker join token rotated")
		}
		if flags.RotateManagerToken {
			did = append(did, "manager join token rotated")
		}
		activity.RecordHeartbeat(ctx, "starting the rotation")
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		err = cli.SwarmUpdate(actx, sw.Version, spec, flags)
		cancel()
		if err != nil {
			if strings.Contains(err.Error(), "update out of sequence") && attempt < 5 {
				continue // the swarm changed meanwhile: read it again
			}
			msg := engineMessage(err)
			if signing != nil {
				msg = strings.ReplaceAll(msg, signing.key, "<CA key>")
			}
			if strings.Contains(msg, "InvalidArgument") || strings.Contains(msg, "invalid") {
				return CARotationStart{}, hostInvalid(m, "the swarm refused the CA rotation: %s", msg)
			}
			return CARotationStart{}, hostError(m, ErrSwarmAPI, true, "could not start the CA rotation: %s", msg)
		}
		st, _, err = s.caStatus(ctx, m, cli)
		if err != nil {
			return CARotationStart{}, err
		}
		res.Started, res.Message, res.Status = true, strings.Join(did, "; "), st
		return res, nil
	}
}

// rotationStarted says why there is nothing to start ("" when there is).
func rotationStarted(st CAStatus, req StartCARotationRequest, signing *signingCA) string {
	switch {
	case st.InProgress:
		return "a rotation is in progress already: following it (" + st.Counts() + ")"
	case signing != nil && st.RootFingerprint == signing.fingerprint:
		return "the swarm's root is the provided one already (" + short(signing.fingerprint) + ")"
	case req.OldRoot != "" && st.RootFingerprint != req.OldRoot:
		return fmt.Sprintf("the root changed already (%s, was %s): the rotation happened", short(st.RootFingerprint), short(req.OldRoot))
	case signing == nil && st.ForceRotate > req.ForceRotate:
		return fmt.Sprintf("ForceRotate is %d already (was %d): the rotation was started", st.ForceRotate, req.ForceRotate)
	}
	return ""
}

// signingCA is an operator-provided root CA, read from the worker's disk.
type signingCA struct {
	cert, key   string // PEM
	fingerprint string
}

// loadSigningCA reads and checks a provided root: the certificate must be a CA
// valid for at least a year from now, and the key must be its own. Messages name
// the files, never their content.
func loadSigningCA(certPath, keyPath string, now time.Time) (*signingCA, error) {
	if certPath == "" || keyPath == "" {
		return nil, errors.New("caCert and caKey go together: give both, or neither for a generated root")
	}
	certPEM, err := readSmall(certPath)
	if err != nil {
		return nil, fmt.Errorf("caCert: %v", err)
	}
	keyPEM, err := readSmall(keyPath)
	if err != nil {
		return nil, fmt.Errorf("caKey: %v", err)
	}
	certs := parseCerts(certPEM)
	if len(certs) != 1 {
		return nil, fmt.Errorf("caCert %s must hold exactly one PEM certificate, found %d", certPath, len(certs))
	}
	c := certs[0]
	switch {
	case !c.IsCA:
		return nil, fmt.Errorf("caCert %s is not a CA certificate (basicConstraints CA:FALSE)", certPath)
	case c.NotAfter.Before(now.Add(minRootValidity)):
		return nil, fmt.Errorf("caCert %s expires %s: swarm wants a root valid for at least a year", certPath, c.NotAfter.UTC().Format(time.DateOnly))
	}
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		return nil, fmt.Errorf("caKey %s holds no PEM block", keyPath)
	}
	key, err := parsePrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("caKey %s: %v", keyPath, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(c.PublicKey) {
		return nil, fmt.Errorf("caKey %s is not the key of caCert %s", keyPath, certPath)
	}
	return &signingCA{cert: string(certPEM), key: string(keyPEM), fingerprint: certFingerprint(c)}, nil
}

func parsePrivateKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		switch k := k.(type) {
		case *ecdsa.PrivateKey:
			return k, nil
		case *rsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		}
		return nil, errors.New("unsupported key type")
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("not an unencrypted PKCS#8, EC or PKCS#1 private key (swarm cannot use a key with a passphrase)")
}

// readSmall reads a local PEM file of at most 64 KiB.
func readSmall(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > 64<<10 {
		return nil, fmt.Errorf("%s is not a regular file of at most 64 KiB", path)
	}
	return os.ReadFile(path)
}

// WatchCARotationRequest waits for a change of the rotation's state.
type WatchCARotationRequest struct {
	Manager playbooks.Host `json:"manager"`
	// Seen is the Key of the status the caller has; the watch returns as soon as
	// the status differs from it, or the rotation is done, or after MaxWait.
	Seen    string             `json:"seen"`
	MaxWait playbooks.Duration `json:"maxWait"`
	// OldRoot: the rotation is not done while the swarm still trusts this root.
	OldRoot string `json:"oldRoot,omitempty"`
}

// WatchCARotation polls the swarm until its rotation state changes from what the
// caller saw, the rotation is done, or MaxWait passes, and returns the status. It
// heartbeats the status at every poll. It changes nothing, so a retry on another
// worker simply watches on.
func (s *Swarm) WatchCARotation(ctx context.Context, req WatchCARotationRequest) (CAStatus, error) {
	m := req.Manager
	cli, err := s.api(m)
	if err != nil {
		return CAStatus{}, err
	}
	defer cli.Close()
	maxWait := req.MaxWait.Std()
	if maxWait <= 0 {
		maxWait = time.Minute
	}
	deadline := time.Now().Add(maxWait)
	for {
		st, _, err := s.caStatus(ctx, m, cli)
		if err != nil {
			return st, err
		}
		if rotationDone(st, req.OldRoot) || st.key() != req.Seen || time.Now().After(deadline) {
			return st, nil
		}
		activity.RecordHeartbeat(ctx, st.Counts())
		if err := sleepCtx(ctx, s.poll); err != nil {
			return st, err
		}
	}
}

// rotationDone: the swarm is done rotating and no longer trusts oldRoot.
func rotationDone(st CAStatus, oldRoot string) bool {
	return st.Done() && (oldRoot == "" || st.RootFingerprint != oldRoot)
}

// RotationDone reports whether st ends a rotation away from oldRoot ("" if unknown).
func RotationDone(st CAStatus, oldRoot string) bool { return rotationDone(st, oldRoot) }

// NodeCertificate is a node's own TLS certificate, read from its disk.
type NodeCertificate struct {
	Host string `json:"host"`
	// Missing: the host has no swarm certificate (not a swarm node).
	Missing   bool      `json:"missing,omitempty"`
	NodeID    string    `json:"nodeId,omitempty"` // the certificate's CN
	Role      string    `json:"role,omitempty"`   // its OU: swarm-manager, swarm-worker
	NotBefore time.Time `json:"notBefore,omitzero"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
	SHA256    string    `json:"sha256,omitempty"`
	// Root is the fingerprint of the root the node trusts (swarm-root-ca.crt).
	Root string `json:"root,omitempty"`
}

// ReadNodeCertificate reads the host's swarm certificate and trusted root over SSH
// (cat, with sudo when the host says so: openssl may be absent) and parses them.
func (s *Swarm) ReadNodeCertificate(ctx context.Context, req SwarmHostRequest) (NodeCertificate, error) {
	h := req.Host
	res, err := s.pool.run(ctx, h, remoteExec{
		argv: []string{"sh", "-c", `cat "$0" && cat "$1" 2>/dev/null || test -e "$0" || { echo "no swarm certificate" >&2; exit 3; }`, SwarmNodeCertFile, SwarmRootCAFile},
		sudo: h.Sudo,
	})
	if err != nil {
		return NodeCertificate{}, err
	}
	switch {
	case res.exitCode == 3:
		return NodeCertificate{Host: h.Name, Missing: true}, nil
	case res.exitCode != 0:
		return NodeCertificate{}, remoteFailed(h, "could not read %s (exit %d): %s", SwarmNodeCertFile, res.exitCode, strings.TrimSpace(res.stderr))
	case len(res.stdout) >= tailMax:
		return NodeCertificate{}, remoteFailed(h, "%s and %s are longer than %d bytes together: not swarm's certificates?", SwarmNodeCertFile, SwarmRootCAFile, tailMax)
	}
	nc, err := nodeCertificateOf([]byte(res.stdout))
	if err != nil {
		return NodeCertificate{}, remoteFailed(h, "%s: %v", SwarmNodeCertFile, err)
	}
	nc.Host = h.Name
	return nc, nil
}

// nodeCertificateOf reads swarm-node.crt followed by swarm-root-ca.crt: the first
// certificate is the node's, the last self-signed CA the root it trusts.
func nodeCertificateOf(data []byte) (NodeCertificate, error) {
	certs := parseCerts(data)
	if len(certs) == 0 {
		return NodeCertificate{}, errors.New("no PEM certificate in it")
	}
	leaf := certs[0]
	nc := NodeCertificate{
		NodeID: leaf.Subject.CommonName, NotBefore: leaf.NotBefore.UTC(), NotAfter: leaf.NotAfter.UTC(),
		SHA256: certFingerprint(leaf),
	}
	if len(leaf.Subject.OrganizationalUnit) > 0 {
		nc.Role = leaf.Subject.OrganizationalUnit[0]
	}
	for _, c := range slices.Backward(certs[1:]) {
		if c.IsCA && bytes.Equal(c.RawSubject, c.RawIssuer) {
			nc.Root = certFingerprint(c)
			break
		}
	}
	return nc, nil
}
