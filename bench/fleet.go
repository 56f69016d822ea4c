package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/clusterflow/clusterflow/internal/sshtest"
)

// benchUser is the account every contender logs in as on the loopback hosts. Not
// root: root's login shell here is bash, which sources /root/.bashrc for every SSH
// session, and on this kind of machine that file runs `pyenv init` (about 120 ms
// per session, more under load), a cost no real host has that would hide the
// differences being measured. benchUser's shell is /bin/sh, which reads no file.
const benchUser = "clusterflow-bench"

// benchHome is benchUser's home (Ansible keeps its remote temporary files there).
const benchHome = "/var/lib/clusterflow-bench"

// ensureBenchUser creates benchUser when missing. It reports whether it did, so
// that the caller removes it again.
func ensureBenchUser() (created bool, err error) {
	if exec.Command("id", "-u", benchUser).Run() == nil {
		return false, nil
	}
	out, err := exec.Command("useradd", "--system", "--create-home", "--home-dir", benchHome,
		"--shell", "/bin/sh", benchUser).CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("useradd %s: %w: %s", benchUser, err, out)
	}
	// "*": no password can match, yet the account is not locked ("!"), which sshd
	// without PAM would refuse even for keys.
	if out, err := exec.Command("usermod", "-p", "*", benchUser).CombinedOutput(); err != nil {
		removeBenchUser()
		return false, fmt.Errorf("usermod %s: %w: %s", benchUser, err, out)
	}
	return true, nil
}

func removeBenchUser() {
	_ = exec.Command("userdel", "--remove", benchUser).Run()
}

// fleet is N loopback SSH hosts served by real OpenSSH sshd processes (at most
// sshtest.MaxHosts addresses each, so several), reachable as benchUser with one
// client key and one known_hosts file.
type fleet struct {
	servers    []*sshtest.Server
	hosts      []sshtest.Endpoint
	key        string // client private key, authorized on every server
	knownHosts string // every endpoint's host key
}

func startFleet(dir string, n int) (*fleet, error) {
	f := &fleet{}
	for len(f.hosts) < n {
		k := min(n-len(f.hosts), sshtest.MaxHosts)
		sdir := filepath.Join(dir, fmt.Sprintf("sshd%02d", len(f.servers)))
		// sshd reads authorized_keys as the user logging in: the directories must
		// let benchUser through (0711: no listing).
		if err := os.MkdirAll(sdir, 0o711); err != nil {
			f.stop()
			return nil, err
		}
		s, err := sshtest.Start(sdir, k)
		if err != nil {
			f.stop()
			return nil, err
		}
		f.servers = append(f.servers, s)
		f.hosts = append(f.hosts, s.Hosts...)
	}
	first := f.servers[0]
	f.key = first.ClientKey
	pub, err := os.ReadFile(first.ClientKey + ".pub")
	if err != nil {
		f.stop()
		return nil, err
	}
	var known strings.Builder
	for _, s := range f.servers {
		// sshd reads authorized_keys at each login: the shared key works at once.
		ak := filepath.Join(s.Dir, "authorized_keys")
		if err := os.WriteFile(ak, pub, 0o644); err != nil {
			f.stop()
			return nil, err
		}
		if err := errors.Join(os.Chmod(ak, 0o644), os.Chmod(s.Dir, 0o711)); err != nil {
			f.stop()
			return nil, err
		}
		b, err := os.ReadFile(s.KnownHosts)
		if err != nil {
			f.stop()
			return nil, err
		}
		known.Write(b)
	}
	f.knownHosts = filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(f.knownHosts, []byte(known.String()), 0o600); err != nil {
		f.stop()
		return nil, err
	}
	return f, nil
}

func (f *fleet) stop() {
	for _, s := range f.servers {
		s.Stop()
	}
}

// playbook writes a clusterflow playbook for the first n hosts with the given steps
// (YAML for spec.steps, indented by four spaces).
func (f *fleet) playbook(path, name string, n int, steps string) error {
	var hosts strings.Builder
	for i, h := range f.hosts[:n] {
		fmt.Fprintf(&hosts, "      - {name: h%03d, address: %s, port: %d}\n", i+1, h.Addr, h.Port)
	}
	text := fmt.Sprintf(`apiVersion: clusterflow.io/v1
kind: Playbook
metadata:
  name: %s
spec:
  inventory:
    defaults:
      user: %s
      identityFile: %s
      knownHostsFile: %s
    hosts:
%s  steps:
%s`, name, benchUser, f.key, f.knownHosts, hosts.String(), steps)
	return os.WriteFile(path, []byte(text), 0o644)
}

// ansibleInventory writes an INI inventory of the first n hosts.
func (f *fleet) ansibleInventory(path string, n int) error {
	var b strings.Builder
	b.WriteString("[bench]\n")
	for i, h := range f.hosts[:n] {
		fmt.Fprintf(&b, "h%03d ansible_host=%s ansible_port=%d\n", i+1, h.Addr, h.Port)
	}
	fmt.Fprintf(&b, "\n[bench:vars]\nansible_user=%s\nansible_ssh_private_key_file=%s\n"+
		"ansible_ssh_common_args='-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes'\n"+
		"ansible_python_interpreter=/usr/bin/python3\n", benchUser, f.key, f.knownHosts)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// sshArgsFile writes one line per host for `xargs -n 4 ssh ...`: -p PORT USER@ADDR true.
func (f *fleet) sshArgsFile(path string, n int) error {
	var b strings.Builder
	for _, h := range f.hosts[:n] {
		fmt.Fprintf(&b, "-p %d %s@%s true\n", h.Port, benchUser, h.Addr)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// sshOpts are the options every raw ssh and scp run uses: no config file, the
// fleet's key and known_hosts, strict checking, no prompts, no multiplexing.
func sshOpts(key, knownHosts string) []string {
	return []string{"-F", "none", "-i", key, "-o", "UserKnownHostsFile=" + knownHosts,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "LogLevel=ERROR"}
}
