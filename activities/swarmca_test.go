package activities

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// testCert makes a certificate (self-signed when parent is nil) and its key.
func testCert(t *testing.T, cn string, ca bool, notAfter time.Time, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn, OrganizationalUnit: []string{"swarm-manager"}},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: notAfter,
		IsCA: ca, BasicConstraintsValid: true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestCAStatusOf(t *testing.T) {
	root, _, rootPEM := testCert(t, "swarm-ca", true, time.Now().Add(20*365*24*time.Hour), nil, nil)
	want := swarm.TLSInfo{TrustRoot: string(rootPEM), CertIssuerSubject: []byte("new"), CertIssuerPublicKey: []byte("k2")}
	sw := swarm.Swarm{ClusterInfo: swarm.ClusterInfo{TLSInfo: want, RootRotationInProgress: true}}
	sw.Spec.CAConfig.ForceRotate = 3
	node := func(name, state string, tls swarm.TLSInfo) swarm.Node {
		n := swarm.Node{ID: "id-" + name}
		n.Description.Hostname, n.Status.State, n.Description.TLSInfo = name, swarm.NodeState(state), tls
		return n
	}
	st := caStatusOf(sw, []swarm.Node{
		node("master", "ready", want),
		node("slave01", "ready", swarm.TLSInfo{TrustRoot: string(rootPEM), CertIssuerSubject: []byte("old"), CertIssuerPublicKey: []byte("k1")}),
		node("slave02", "down", swarm.TLSInfo{TrustRoot: "old root", CertIssuerSubject: []byte("old"), CertIssuerPublicKey: []byte("k1")}),
	})
	if st.Counts() != "TLS certificates 1/3 nodes, trust root 2/3" || st.Done() || st.ForceRotate != 3 {
		t.Errorf("status %s, done %t", st.Counts(), st.Done())
	}
	if st.RootFingerprint != certFingerprint(root) || len(st.RootFingerprint) != 64 || !st.RootNotAfter.Equal(root.NotAfter) {
		t.Errorf("root %s %s", st.RootFingerprint, st.RootNotAfter)
	}
	if got := strings.Join(st.HoldingUp(), "; "); got != "slave01 (certificate); slave02 (down: certificate, trust root)" {
		t.Errorf("holding up: %s", got)
	}
	if got := strings.Join(st.DownHoldingUp(), ","); got != "slave02" {
		t.Errorf("down: %s", got)
	}
	if !rotationDone(CAStatus{RootFingerprint: "b", Nodes: []CANode{}}, "a") || rotationDone(CAStatus{RootFingerprint: "a", Nodes: []CANode{}}, "a") {
		t.Error("rotationDone must want another root")
	}
}

func TestRotationStarted(t *testing.T) {
	req := StartCARotationRequest{OldRoot: "r1", ForceRotate: 2}
	for _, tt := range []struct {
		st   CAStatus
		want string
	}{
		{CAStatus{RootFingerprint: "r1", ForceRotate: 2}, ""},
		{CAStatus{RootFingerprint: "r1", ForceRotate: 2, InProgress: true}, "in progress already"},
		{CAStatus{RootFingerprint: "r2", ForceRotate: 3}, "the root changed already"},
		{CAStatus{RootFingerprint: "r1", ForceRotate: 3}, "ForceRotate is 3 already"},
	} {
		if got := rotationStarted(tt.st, req, nil); (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("%+v: %q, want %q", tt.st, got, tt.want)
		}
	}
	if got := rotationStarted(CAStatus{RootFingerprint: "p"}, StartCARotationRequest{OldRoot: "r1"}, &signingCA{fingerprint: "p"}); !strings.Contains(got, "provided one already") {
		t.Errorf("provided root in place: %q", got)
	}
}

func TestLoadSigningCA(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyPEM := func(k *ecdsa.PrivateKey) []byte {
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	now := time.Now()
	ca, caKey, caPEM := testCert(t, "my root", true, now.Add(5*365*24*time.Hour), nil, nil)
	_, otherKey, _ := testCert(t, "other", true, now.Add(5*365*24*time.Hour), nil, nil)
	_, shortKey, shortPEM := testCert(t, "short", true, now.Add(100*24*time.Hour), nil, nil)
	_, leafKey, leafPEM := testCert(t, "leaf", false, now.Add(5*365*24*time.Hour), ca, caKey)

	got, err := loadSigningCA(workerfs.Unrestricted(), write("ca.pem", caPEM), write("ca.key", keyPEM(caKey)), now)
	if err != nil {
		t.Fatal(err)
	}
	if got.fingerprint != certFingerprint(ca) || got.cert != string(caPEM) {
		t.Errorf("loaded %+v", got.fingerprint)
	}
	for _, tt := range []struct {
		cert, key []byte
		want      string
	}{
		{caPEM, keyPEM(otherKey), "is not the key of caCert"},
		{shortPEM, keyPEM(shortKey), "valid for at least a year"},
		{leafPEM, keyPEM(leafKey), "not a CA certificate"},
		{caPEM, []byte("nothing"), "holds no PEM block"},
	} {
		_, err := loadSigningCA(workerfs.Unrestricted(), write("c.pem", tt.cert), write("k.pem", tt.key), now)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("want %q, got %v", tt.want, err)
		} else if strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("the message shows the key: %v", err)
		}
	}
}

func TestNodeCertificateOf(t *testing.T) {
	root, rootKey, rootPEM := testCert(t, "swarm-ca", true, time.Now().Add(20*365*24*time.Hour), nil, nil)
	notAfter := time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
	leaf, _, leafPEM := testCert(t, "nodeid123", false, notAfter, root, rootKey)
	nc, err := nodeCertificateOf(append(leafPEM, rootPEM...))
	if err != nil {
		t.Fatal(err)
	}
	if nc.NodeID != "nodeid123" || nc.Role != "swarm-manager" || !nc.NotAfter.Equal(notAfter) || nc.SHA256 != certFingerprint(leaf) || nc.Root != certFingerprint(root) {
		t.Errorf("%+v", nc)
	}
	if _, err := nodeCertificateOf([]byte("garbage")); err == nil {
		t.Error("garbage parsed")
	}
}
