package remote

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/clusterflow/clusterflow/internal/rules"
	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// knownHostsWriteMu serialises TOFU appends to known_hosts files in this process.
// Together with O_APPEND and a re-check under the lock, two dials that meet the same
// new host at once pin one key, and the second sees the first's line.
var knownHostsWriteMu sync.Mutex

// hostKeyCheck is the HostKeyCallback for one dial. The callback's error reaches the
// caller wrapped in "ssh: handshake failed", so the typed error is also kept in err.
type hostKeyCheck struct {
	host  Host
	log   *slog.Logger
	files *workerfs.Policy
	err   error
}

func (c *hostKeyCheck) callback(hostname string, remote net.Addr, key ssh.PublicKey) error {
	c.err = c.verify(hostname, remote, key)
	return c.err
}

func (c *hostKeyCheck) verify(hostname string, remote net.Addr, key ssh.PublicKey) error {
	h := c.host
	file := h.KnownHostsFile
	check, err := loadKnownHosts(file)
	if err != nil {
		return invalid(h, "cannot read known_hosts file %s: %v", file, err)
	}
	err = check(hostname, remote, key)
	if err == nil {
		return nil
	}
	var keyErr *knownhosts.KeyError
	var revoked *knownhosts.RevokedError
	switch {
	case errors.As(err, &revoked):
		return hostErr(h, HostKeyMismatch, "host key revoked: the server presented %s, which %s:%d marks as @revoked. Do not trust this host until the key is replaced",
			describeKey(key), revoked.Revoked.Filename, revoked.Revoked.Line)
	case errors.As(err, &keyErr) && len(keyErr.Want) > 0:
		return mismatchError(h, key, keyErr.Want)
	case errors.As(err, &keyErr):
		if h.HostKeyPolicy == HostKeyTOFU {
			return c.pin(hostname, remote, key)
		}
		return hostErr(h, HostKeyUnknown, "host key unknown: %s is not in %s; add it (ssh-keyscan -p %d %s >> %s after checking the fingerprint; the server presented %s) or set spec.hostKeyPolicy: tofu",
			knownhosts.Normalize(hostname), file, h.PortOrDefault(), h.Address, file, describeKey(key))
	default:
		return invalid(h, "checking the host key against %s: %v", file, err)
	}
}

// pin appends the key to the known_hosts file (trust on first use). It checks again
// under the lock: another dial may have pinned a key for this host meanwhile.
func (c *hostKeyCheck) pin(hostname string, remote net.Addr, key ssh.PublicKey) error {
	h := c.host
	file := h.KnownHostsFile
	knownHostsWriteMu.Lock()
	defer knownHostsWriteMu.Unlock()

	check, err := loadKnownHosts(file)
	if err != nil {
		return invalid(h, "cannot read known_hosts file %s: %v", file, err)
	}
	var keyErr *knownhosts.KeyError
	switch err := check(hostname, remote, key); {
	case err == nil:
		return nil
	case errors.As(err, &keyErr) && len(keyErr.Want) > 0:
		return mismatchError(h, key, keyErr.Want)
	case !errors.As(err, &keyErr):
		return invalid(h, "checking the host key against %s: %v", file, err)
	}

	// What is pinned is one literal host: never a pattern that would match others.
	pattern := knownhosts.Normalize(hostname)
	if !literalHostPattern(pattern) {
		return invalid(h, "cannot pin the host key (tofu): %q is not a literal host name or address", pattern)
	}
	if err := c.files.Write(file); err != nil {
		return invalid(h, "cannot pin the host key (tofu): knownHostsFile: %v", err)
	}
	if err := appendKnownHost(file, knownhosts.Line([]string{pattern}, key)); err != nil {
		return invalid(h, "cannot pin the host key (tofu): %v", err)
	}
	c.log.Info("pinned new host key (hostKeyPolicy tofu)",
		"host", h.Name, "addr", h.Addr(), "key", describeKey(key), "file", file)
	return nil
}

// literalHostPattern reports whether p, a known_hosts host field, names one host
// (an address, or "[address]:port") and has nothing OpenSSH reads as a pattern or
// a separator: no wildcard, negation, comma, marker, hash, whitespace or control
// character.
func literalHostPattern(p string) bool {
	host := p
	if strings.HasPrefix(p, "[") {
		h, port, ok := strings.Cut(p[1:], "]:")
		if !ok || port == "" || strings.Trim(port, "0123456789") != "" {
			return false
		}
		host = h
	}
	return rules.HostAddress(host)
}

// appendKnownHost appends one line, creating the file (0600) and its directory
// (0700) when missing, and starting on a new line if the file lacks a final newline.
func appendKnownHost(file, line string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	prefix := ""
	if st, err := os.Stat(file); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if r, err := os.Open(file); err == nil {
			if _, err := r.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
				prefix = "\n"
			}
			r.Close()
		}
	}
	if _, err := f.WriteString(prefix + line + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func mismatchError(h Host, key ssh.PublicKey, want []knownhosts.KnownKey) error {
	where := make([]string, 0, len(want))
	for _, w := range want {
		where = append(where, fmt.Sprintf("%s:%d", w.Filename, w.Line))
	}
	lines, them := "that line", "has a different key"
	if len(where) > 1 {
		lines, them = "those lines", "have different keys"
	}
	return hostErr(h, HostKeyMismatch, "host key mismatch: the server presented %s, but %s %s for it. If the host was reinstalled, remove %s; otherwise this may be an attack",
		describeKey(key), strings.Join(where, ", "), them, lines)
}

// loadKnownHosts parses a known_hosts file. A missing file is an empty one: under
// strict every host is then unknown (with a message naming the file), under tofu the
// first pin creates it.
func loadKnownHosts(file string) (ssh.HostKeyCallback, error) {
	cb, err := knownhosts.New(file)
	if errors.Is(err, fs.ErrNotExist) {
		return knownhosts.New()
	}
	return cb, err
}

// probeKey is a throwaway key that matches nothing in any known_hosts file. Checking
// it makes knownhosts list the keys it does have for an address (KeyError.Want).
var probeKey = sync.OnceValue(func() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
})

// knownHostAlgorithms returns the host key algorithms for the keys that file has for
// addr ("host:port"), in file order, or nil when it has none.
func knownHostAlgorithms(file, addr string) ([]string, error) {
	check, err := loadKnownHosts(file)
	if err != nil {
		return nil, err
	}
	var keyErr *knownhosts.KeyError
	if err := check(addr, &net.TCPAddr{IP: net.IPv4zero}, probeKey()); !errors.As(err, &keyErr) {
		return nil, nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, w := range keyErr.Want {
		for _, a := range algorithmsForKeyType(w.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos, nil
}

// algorithmsForKeyType maps a key type to the signature algorithms a server may use
// with it: an RSA key signs with SHA-2 (and SHA-1 on old servers).
func algorithmsForKeyType(t string) []string {
	if t == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{t}
}

// describeKey is "TYPE SHA256:..." (public, safe to log and show).
func describeKey(key ssh.PublicKey) string {
	return key.Type() + " " + ssh.FingerprintSHA256(key)
}

// VerifiedAmong reports whether one of keys is a key that h's known_hosts file pins
// for h, or the file pins no plain key for h at all (a host authenticated by a host
// certificate has none, and is not checked). It tells whether keys read from a host
// include the key this worker verifies it by.
func VerifiedAmong(h Host, keys []PublicKey) (bool, error) {
	check, err := loadKnownHosts(h.KnownHostsFile)
	if err != nil {
		return false, invalid(h, "cannot read known_hosts file %s: %v", h.KnownHostsFile, err)
	}
	pinned := false
	for _, key := range keys {
		err := check(h.Addr(), &net.TCPAddr{IP: net.IPv4zero}, key.k)
		if err == nil {
			return true, nil
		}
		var keyErr *knownhosts.KeyError
		if errors.As(err, &keyErr) && len(keyErr.Want) > 0 {
			pinned = true
		}
	}
	return !pinned, nil
}

// AddKnownHostKeys appends to h's known_hosts file (on the worker) the keys it lacks
// for h's address, and returns those it appended. A key the file marks @revoked is
// never added. Lines are only appended; the file is created 0600 when missing.
// Errors reading the file are *Error (Invalid); errors writing it are not.
func AddKnownHostKeys(h Host, keys []PublicKey) ([]PublicKey, error) {
	knownHostsWriteMu.Lock()
	defer knownHostsWriteMu.Unlock()
	check, err := loadKnownHosts(h.KnownHostsFile)
	if err != nil {
		return nil, invalid(h, "cannot read known_hosts file %s: %v", h.KnownHostsFile, err)
	}
	name := knownhosts.Normalize(h.Addr())
	var added []PublicKey
	for _, key := range keys {
		err := check(h.Addr(), &net.TCPAddr{IP: net.IPv4zero}, key.k)
		var revoked *knownhosts.RevokedError
		if err == nil || errors.As(err, &revoked) {
			continue
		}
		if err := appendKnownHost(h.KnownHostsFile, knownhosts.Line([]string{name}, key.k)); err != nil {
			return added, fmt.Errorf("appending to %s: %w", h.KnownHostsFile, err)
		}
		added = append(added, key)
	}
	return added, nil
}
