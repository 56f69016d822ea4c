package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// keyComment is the comment of the lab key in authorized_keys files.
const keyComment = "clusterflow-lab"

// ensureKeyPair loads the lab key pair, generating it the first time (created is then
// true). The private key is written in OpenSSH format with mode 0600 so that the system
// ssh accepts it too. The state directory is made 0755: the other files in it are not
// secret, and a container user other than its owner (the compose worker) must reach them.
func ensureKeyPair(p paths) (signer ssh.Signer, created bool, err error) {
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return nil, false, err
	}
	if err := os.Chmod(p.Dir, 0o755); err != nil {
		return nil, false, err
	}
	// The key must not end up in git by accident.
	if err := writeFileAtomic(filepath.Join(p.Dir, ".gitignore"), []byte("# lab state: private key, host keys; never commit\n*\n"), 0o644); err != nil {
		return nil, false, err
	}
	if data, err := os.ReadFile(p.Key); err == nil {
		signer, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, false, fmt.Errorf("lab key %s: %w (move it away to get a new one)", p.Key, err)
		}
		if fi, err := os.Stat(p.Key); err == nil && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p.Key, 0o600); err != nil {
				return nil, false, err
			}
		}
		return signer, false, writePublicKey(p, signer)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("lab key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("generate lab key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, keyComment)
	if err != nil {
		return nil, false, fmt.Errorf("encode lab key: %w", err)
	}
	if signer, err = ssh.NewSignerFromKey(priv); err != nil {
		return nil, false, err
	}
	if err := writeFileAtomic(p.Key, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, false, err
	}
	return signer, true, writePublicKey(p, signer)
}

// writePublicKey (re)writes id_ed25519.pub from the private key.
func writePublicKey(p paths, signer ssh.Signer) error {
	return writeFileAtomic(p.PubKey, []byte(authorizedKeyLine(signer)+"\n"), 0o644)
}

// authorizedKeyLine is the line the lab key has in a node's authorized_keys.
func authorizedKeyLine(signer ssh.Signer) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " " + keyComment
}

// knownHostsLine is the known_hosts line of a node: its address (port 22 needs no
// brackets) and its host key.
func knownHostsLine(addr string, port int, key ssh.PublicKey) string {
	return knownhosts.Line([]string{net.JoinHostPort(addr, strconv.Itoa(port))}, key)
}

// sshLogin opens an SSH connection to a node as root with the lab key, checking the host
// key strictly against the lab's known_hosts file.
func sshLogin(ctx context.Context, p paths, signer ssh.Signer, addr string) (*ssh.Client, error) {
	check, err := knownhosts.New(p.KnownHosts)
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	cfg := &ssh.ClientConfig{
		User:            nodeUser,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: check,
		// The nodes have only an ed25519 host key, and known_hosts records only that.
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           5 * time.Second,
	}
	hostport := net.JoinHostPort(addr, strconv.Itoa(sshPort))
	d := net.Dialer{Timeout: cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(cfg.Timeout))
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, hostport, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// sshRun runs a command over an SSH connection and returns its standard output.
func sshRun(c *ssh.Client, cmd string) (string, error) {
	sess, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	if err := sess.Run(cmd); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", cmd, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// waitSSH retries an SSH login to the node until it works and `hostname` names the node,
// or until ctx ends. It returns the last error seen.
func waitSSH(ctx context.Context, p paths, signer ssh.Signer, n node) error {
	var last error
	for {
		attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := sshLogin(attempt, p, signer, n.Address.String())
		cancel()
		if err == nil {
			out, runErr := sshRun(c, "hostname")
			c.Close()
			switch got := strings.TrimSpace(out); {
			case runErr != nil:
				err = runErr
			case got != n.Name:
				err = fmt.Errorf("%s answers with hostname %q, not %q", n.Address, got, n.Name)
			default:
				return nil
			}
		}
		last = err
		var keyErr *knownhosts.KeyError
		if errors.As(err, &keyErr) && len(keyErr.Want) > 0 {
			return fmt.Errorf("host key of %s does not match known_hosts: %w", n.Name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ssh %s@%s (%s): %w", nodeUser, n.Address, n.Name, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// writeFileAtomic replaces a file by a complete new one (temporary file, then rename),
// so that readers, such as a worker container that mounts the state directory, never
// see half a file.
func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
