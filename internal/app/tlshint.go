package app

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/clusterflow/clusterflow/internal/config"
)

// tlsHint explains a failed connection to a frontend when it is a TLS problem, from
// a TLS handshake of its own with the first frontend. Under TLS 1.3 a server that
// refuses the client's certificate says so only after the client has finished its
// side of the handshake, so the SDK's error is often just "broken pipe" or "EOF";
// a read after the handshake gets the server's alert. "" means nothing to add.
func tlsHint(address string, opts client.Options) string {
	frontends, err := config.Frontends(address)
	if err != nil || strings.Contains(frontends[0], "://") {
		return ""
	}
	addr := frontends[0]
	d := &net.Dialer{Timeout: 5 * time.Second}
	tc := opts.ConnectionOptions.TLS
	if tc == nil {
		// Only asks whether the server speaks TLS; nothing is sent over it.
		probe := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}} //nolint:gosec
		conn, err := tls.DialWithDialer(d, "tcp", addr, probe)
		if err == nil {
			conn.Close()
		}
		if err == nil || strings.Contains(err.Error(), "remote error: tls:") {
			return "the server speaks TLS and this client does not: give --tls-ca (the CA of the server's certificate), " +
				"and --tls-cert and --tls-key when it requires client certificates"
		}
		return ""
	}
	tc = tc.Clone()
	tc.NextProtos = []string{"h2"} // gRPC's
	if tc.ServerName == "" {
		tc.ServerName, _, _ = net.SplitHostPort(addr)
	}
	conn, err := tls.DialWithDialer(d, "tcp", addr, tc)
	if err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	var ne net.Error
	var verify *tls.CertificateVerificationError
	switch {
	case err == nil, errors.As(err, &ne) && ne.Timeout():
		return "" // the server took the handshake and said nothing: not a TLS problem
	case strings.Contains(err.Error(), "certificate required") && len(tc.Certificates) == 0 && tc.GetClientCertificate == nil:
		return "the server requires a client certificate: give --tls-cert and --tls-key, a certificate signed by the CA the server trusts"
	case strings.Contains(err.Error(), "certificate required"):
		// A TLS client sends only a certificate issued by a CA the server names.
		return "the server requires a client certificate signed by a CA it trusts, and the one given (--tls-cert) is not, so it was not sent: " +
			"use a certificate signed by the CA the server's --tls-ca names"
	case strings.Contains(err.Error(), "unknown certificate authority"), strings.Contains(err.Error(), "bad certificate"):
		return "the server refused this client certificate (" + err.Error() + "): it must be signed by the CA the server trusts (its --tls-ca)"
	case errors.As(err, &verify):
		return "this client does not accept the server's certificate (" + err.Error() + "): give --tls-ca, the CA that signed it, " +
			"and --tls-server-name when the certificate does not name the address dialled"
	case strings.Contains(err.Error(), "tls:"):
		return "TLS with " + addr + " failed: " + err.Error()
	}
	return ""
}
