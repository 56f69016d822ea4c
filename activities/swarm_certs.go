package activities

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// This file reads a node's own certificates from its disk (CheckCertificates).

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
	c := swarmCertsScript.cmd(SwarmNodeCertFile, SwarmRootCAFile)
	c.Sudo = h.Sudo
	res, err := s.rem.run(ctx, h, c)
	if err != nil {
		return NodeCertificate{}, err
	}
	switch {
	case res.ExitCode == 3:
		return NodeCertificate{Host: h.Name, Missing: true}, nil
	case res.ExitCode != 0:
		return NodeCertificate{}, remoteFailed(h, "could not read %s (exit %d): %s", SwarmNodeCertFile, res.ExitCode, strings.TrimSpace(res.Stderr))
	case len(res.Stdout) >= remote.TailMax:
		return NodeCertificate{}, remoteFailed(h, "%s and %s are longer than %d bytes together: not swarm's certificates?", SwarmNodeCertFile, SwarmRootCAFile, remote.TailMax)
	}
	nc, err := nodeCertificateOf([]byte(res.Stdout))
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
