package activities

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// This file checks logins that DistributeKeys has set up: from every host to the
// others (VerifyMesh), and from the worker with a new key (VerifyKeyLogin).

// MeshTarget is a host that another host logs in to.
type MeshTarget struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Port    int    `json:"port"` // 0 means 22
}

// VerifyMeshRequest asks Host to log in to every target as User.
type VerifyMeshRequest struct {
	Host    remote.Host  `json:"host"`
	User    string       `json:"user,omitempty"` // default: the login user
	Targets []MeshTarget `json:"targets"`
}

// VerifyMeshResult counts the logins made.
type VerifyMeshResult struct {
	Checked int `json:"checked"`
}

// VerifyMesh logs in from the host to every target with the host's own key
// (~USER/.ssh/id_ed25519) as USER, with strict host key checking against
// ~USER/.ssh/known_hosts only (ssh -o BatchMode=yes -o StrictHostKeyChecking=yes ...
// USER@TARGET true). Every login must succeed; the error names the pairs that failed.
func (k *Keys) VerifyMesh(ctx context.Context, req VerifyMeshRequest) (VerifyMeshResult, error) {
	h := req.Host
	user, err := keysUser(h, req.User)
	if err != nil {
		return VerifyMeshResult{}, err
	}
	if len(req.Targets) == 0 {
		return VerifyMeshResult{}, nil
	}
	args := []string{user}
	for _, t := range req.Targets {
		if t.Address == "" || strings.HasPrefix(t.Address, "-") || strings.ContainsAny(t.Address+t.Name, " \t\n") {
			return VerifyMeshResult{}, hostInvalid(h, "mesh target %q has a bad address %q", t.Name, t.Address)
		}
		args = append(args, t.Name, t.Address, strconv.Itoa(portOrDefault(t.Port)))
	}
	c := meshVerifyScript.cmd(args...)
	c.Sudo = h.Sudo
	r, err := k.rem.run(ctx, h, commandProgress(ctx, c, k.heartbeatEvery, "mesh"))
	if err != nil {
		return VerifyMeshResult{}, err
	}
	if r.ExitCode != 0 {
		return VerifyMeshResult{}, remoteFailed(h, "mesh check failed (exit %d): %s", r.ExitCode, oneLine(r.Stderr))
	}
	ok := 0
	var fails []string
	transient := true
	for line := range strings.SplitSeq(r.Stdout, "\n") {
		f := strings.SplitN(line, " ", 4)
		switch {
		case f[0] == "ok" && len(f) >= 2:
			ok++
		case f[0] == "fail" && len(f) >= 3:
			msg := ""
			if len(f) == 4 {
				msg = strings.TrimSpace(f[3])
			}
			fails = append(fails, fmt.Sprintf("%s -> %s: ssh exit %s: %s", h.Name, f[1], f[2], msg))
			if !looksTransient(msg) {
				transient = false
			}
		}
	}
	if len(fails) > 0 {
		failed := loginRefused
		if transient {
			failed = loginFailed
		}
		return VerifyMeshResult{Checked: ok}, failed(h, "mesh login as %s failed for %d of %d hosts: %s", user, len(fails), len(req.Targets), strings.Join(fails, "; "))
	}
	if ok != len(req.Targets) {
		return VerifyMeshResult{Checked: ok}, remoteFailed(h, "mesh check reported %d logins of %d: %q", ok, len(req.Targets), r.Stdout)
	}
	return VerifyMeshResult{Checked: ok}, nil
}

// looksTransient tells a login failure worth retrying (the network, a busy sshd) from
// one that will fail the same way again (key refused, host key not verified).
func looksTransient(msg string) bool {
	for _, s := range []string{"Permission denied", "Host key verification failed", "REMOTE HOST IDENTIFICATION", "No such file", "not accessible", "bad permissions", "UNPROTECTED"} {
		if strings.Contains(msg, s) {
			return false
		}
	}
	return true
}

// VerifyKeyLoginRequest asks to log in to Host with IdentityFile instead of the
// host's own credentials.
type VerifyKeyLoginRequest struct {
	Host         remote.Host `json:"host"`
	IdentityFile string      `json:"identityFile"` // absolute path on the worker
}

// VerifyKeyLogin opens a fresh SSH connection (not a pooled one) to the host as its
// login user, authenticating with IdentityFile only (no agent) and checking the host
// key strictly as usual, runs "true", and closes the connection. A jump host, when
// the host has one, is reached over the pool with its own credentials.
func (k *Keys) VerifyKeyLogin(ctx context.Context, req VerifyKeyLoginRequest) error {
	h := req.Host
	h.IdentityFile, h.UseAgent = req.IdentityFile, false
	if err := h.Validate(); err != nil {
		return typed(err)
	}
	if h.IdentityFile == "" {
		return hostInvalid(h, "no identity file to verify")
	}
	defer k.heartbeats(ctx, "verify key login")()
	conn, err := k.rem.dial(ctx, h)
	if err != nil {
		return err
	}
	defer conn.Close()
	r, err := conn.run(ctx, remote.Cmd{Argv: []string{"true"}})
	switch {
	case err != nil:
		return err
	case r.ExitCode != 0:
		return remoteFailed(h, "logged in with %s, but 'true' exited %d (a forced command?)", req.IdentityFile, r.ExitCode)
	}
	return nil
}
