package devserver

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"

	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	"go.temporal.io/server/common/config"

	cfconfig "github.com/clusterflow/clusterflow/internal/config"
)

// TLSFiles are the PEM files of the server's mTLS: the frontend and the internode
// traffic (gRPC between the services of all the cluster's servers, and their
// membership gossip) require a client certificate signed by CAFile. The server's
// own certificate (CertFile, KeyFile) is what it presents both as a server and as a
// client (to the other servers, and for this process's Web UI and namespace setup
// on its own frontend), so it needs both the serverAuth and clientAuth extended key
// usages, and a subject alternative name for every address clients dial it by (or
// the ServerName they verify instead). The files are read again when they change.
type TLSFiles struct {
	CertFile, KeyFile, CAFile string
	// ServerName is the name the servers verify in each other's certificates (and
	// this process's Web UI in its own); empty means the first DNS name of this
	// server's certificate, or its first IP address when it has none. The servers
	// find each other by IP address, through membership, so a name every server's
	// certificate carries is what makes their addresses not matter.
	ServerName string
	name       string // ServerName, or the one taken from the certificate
}

// check loads the files once, so that a wrong path or a key that does not match its
// certificate is refused before the server starts (the server itself reports those
// on the first connection, inside its logs), and settles the name servers verify.
func (t *TLSFiles) check() error {
	pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return fmt.Errorf("embedded temporal: TLS certificate %s and key %s: %w", t.CertFile, t.KeyFile, err)
	}
	if _, err := t.pool(); err != nil {
		return err
	}
	t.name = t.ServerName
	if t.name != "" {
		return nil
	}
	switch leaf := pair.Leaf; {
	case len(leaf.DNSNames) > 0:
		t.name = leaf.DNSNames[0]
	case len(leaf.IPAddresses) > 0:
		t.name = leaf.IPAddresses[0].String()
	default:
		return fmt.Errorf("embedded temporal: TLS certificate %s names no host (no DNS or IP subject alternative name): "+
			"give it one that every server's certificate carries, or set --tls-server-name", t.CertFile)
	}
	return nil
}

func (t *TLSFiles) pool() (*x509.CertPool, error) {
	pool, err := cfconfig.LoadCA(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("embedded temporal: TLS CA: %w", err)
	}
	return pool, nil
}

// rootTLS is the server's TLS configuration: the same certificate and CA for the
// frontend and internode groups, client certificates required on both.
func (t *TLSFiles) rootTLS() config.RootTLS {
	server := config.ServerTLS{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFiles: []string{t.CAFile}, RequireClientAuth: true}
	client := config.ClientTLS{ServerName: t.name, RootCAFiles: []string{t.CAFile}}
	return config.RootTLS{
		Internode: config.GroupTLS{Server: server, Client: client},
		Frontend:  config.GroupTLS{Server: server, Client: client},
	}
}

// clientConfig is the TLS this process uses on its own frontend.
func (t *TLSFiles) clientConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("embedded temporal: TLS certificate: %w", err)
	}
	pool, err := t.pool()
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: t.name, MinVersion: tls.VersionTLS12}, nil
}

// localFrontend is where this process dials its own frontend.
func (s *Server) localFrontend() string {
	host, port, _ := net.SplitHostPort(s.hostPort)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return s.hostPort
}

// uiTLS is how the Web UI reaches the frontend: with the server's certificate.
func (s *Server) uiTLS() uiconfig.TLS {
	if s.tls == nil {
		return uiconfig.TLS{}
	}
	return uiconfig.TLS{CaFile: s.tls.CAFile, CertFile: s.tls.CertFile, KeyFile: s.tls.KeyFile, ServerName: s.tls.name, EnableHostVerification: true}
}
