package remote

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// This file holds OpenSSH's key formats as the key activities need them: public
// key lines (authorized_keys, known_hosts, *.pub) and unencrypted private key
// files. Only public keys and fingerprints leave it; private key bytes go from a
// file to the parser, or from the generator to a file, and nowhere else.

// PublicKey is an SSH public key. The zero value is no key.
type PublicKey struct{ k ssh.PublicKey }

// IsZero reports whether p holds no key.
func (p PublicKey) IsZero() bool { return p.k == nil }

// Type is the key's algorithm name, e.g. ssh-ed25519.
func (p PublicKey) Type() string { return p.k.Type() }

// ID is the key's wire form, for comparing keys and as a map key. Comments and
// options do not take part.
func (p PublicKey) ID() string { return string(p.k.Marshal()) }

// Equal reports whether both are the same key.
func (p PublicKey) Equal(o PublicKey) bool {
	return p.k != nil && o.k != nil && bytes.Equal(p.k.Marshal(), o.k.Marshal())
}

// Fingerprint is "SHA256:..." (public, safe to log and show).
func (p PublicKey) Fingerprint() string { return ssh.FingerprintSHA256(p.k) }

// Describe is "TYPE SHA256:..." (public, safe to log and show).
func (p PublicKey) Describe() string { return describeKey(p.k) }

// AuthorizedLine is "TYPE BASE64 COMMENT", or without the comment when it is empty.
func (p PublicKey) AuthorizedLine(comment string) string {
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(p.k)))
	if c := strings.TrimSpace(comment); c != "" {
		line += " " + c
	}
	return line
}

// ParseAuthorizedKey reads one authorized_keys line: [options] TYPE BASE64 [comment].
func ParseAuthorizedKey(line string) (key PublicKey, comment string, options []string, err error) {
	k, comment, options, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return PublicKey{}, "", nil, err
	}
	return PublicKey{k}, comment, options, nil
}

// ParseKnownHostsLine reads one known_hosts line: [@marker] PATTERNS TYPE BASE64.
func ParseKnownHostsLine(line string) (marker string, patterns []string, key PublicKey, err error) {
	marker, patterns, k, _, _, err := ssh.ParseKnownHosts([]byte(line))
	if err != nil {
		return "", nil, PublicKey{}, err
	}
	return marker, patterns, PublicKey{k}, nil
}

// KnownHostsLine is the known_hosts line that lists key for names.
func KnownHostsLine(names []string, key PublicKey) string { return knownhosts.Line(names, key.k) }

// KnownHostsName is addr ("host:port") as known_hosts writes it: "host" for port
// 22, else "[host]:port".
func KnownHostsName(addr string) string { return knownhosts.Normalize(addr) }

// ErrPassphrase: the private key is protected by a passphrase, which clusterflow
// cannot ask for.
var ErrPassphrase = errors.New("the key is protected by a passphrase")

// ParsePrivateKey reads an unencrypted private key file (OpenSSH, PEM) and returns
// its public half. The parser's error messages never quote key material.
func ParsePrivateKey(data []byte) (PublicKey, error) {
	s, err := ssh.ParsePrivateKey(data)
	var ppErr *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &ppErr):
		return PublicKey{}, ErrPassphrase
	case err != nil:
		return PublicKey{}, err
	}
	return PublicKey{s.PublicKey()}, nil
}

// NewKeyPair generates an ed25519 key pair: the private key as an OpenSSH PEM file
// with comment, and its public key.
func NewKeyPair(comment string) (privatePEM []byte, pub PublicKey, err error) {
	edPub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, PublicKey{}, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, PublicKey{}, err
	}
	k, err := ssh.NewPublicKey(edPub)
	if err != nil {
		return nil, PublicKey{}, err
	}
	return pem.EncodeToMemory(block), PublicKey{k}, nil
}
