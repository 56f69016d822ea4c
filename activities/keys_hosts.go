package activities

import (
	"context"
	"strings"

	"go.temporal.io/sdk/activity"

	"github.com/clusterflow/clusterflow/activities/remote"
)

type ReadHostKeysRequest struct {
	Host remote.Host `json:"host"`
	User string      `json:"user,omitempty"` // default: the login user
	Mesh bool        `json:"mesh,omitempty"`
}

// HostKeysResult is a host's public keys.
type HostKeysResult struct {
	// HostKeys are the host's public host keys, "TYPE BASE64", from
	// /etc/ssh/ssh_host_*_key.pub.
	HostKeys []string `json:"hostKeys"`
	// NodeKey is ~USER/.ssh/id_ed25519.pub ("TYPE BASE64 COMMENT"), with Mesh.
	NodeKey string `json:"nodeKey,omitempty"`
	// Changed: the node key was generated (or its mode or owner fixed).
	Changed bool   `json:"changed,omitempty"`
	Note    string `json:"note,omitempty"`
}

// ReadHostKeys returns the host's public host keys and, with Mesh, the public key of
// the host's own key pair for User (generated with ssh-keygen when missing).
//
// At least one of the host keys read must be the one this worker verified for the
// host (its known_hosts file): otherwise sshd serves keys from elsewhere and the
// keys read are not the ones to distribute.
func (k *Keys) ReadHostKeys(ctx context.Context, req ReadHostKeysRequest) (HostKeysResult, error) {
	h := req.Host
	user, err := keysUser(h, req.User)
	if err != nil {
		return HostKeysResult{}, err
	}
	defer k.heartbeats(ctx, "read host keys")()
	mesh := "no"
	if req.Mesh {
		mesh = "mesh"
	}
	c := hostKeysScript.cmd(user, mesh)
	c.Sudo = h.Sudo
	r, err := k.rem.run(ctx, h, c)
	if err != nil {
		return HostKeysResult{}, err
	}
	if r.ExitCode != 0 {
		return HostKeysResult{}, remoteFailed(h, "reading host keys (exit %d): %s", r.ExitCode, oneLine(r.Stderr))
	}
	var res HostKeysResult
	var notes []string
	var parsed []remote.PublicKey
	for line := range strings.SplitSeq(r.Stdout, "\n") {
		kind, rest, _ := strings.Cut(line, " ")
		switch kind {
		case "hostkey":
			key, _, _, err := remote.ParseAuthorizedKey(rest)
			if err != nil {
				continue // an unreadable .pub file is not sshd's key either
			}
			res.HostKeys = append(res.HostKeys, key.AuthorizedLine(""))
			parsed = append(parsed, key)
		case "nodekey":
			key, comment, _, err := remote.ParseAuthorizedKey(rest)
			if err != nil {
				return HostKeysResult{}, remoteFailed(h, "~%s/.ssh/id_ed25519.pub is not a public key: %v", user, err)
			}
			res.NodeKey = key.AuthorizedLine(comment)
		case "note":
			notes = append(notes, rest)
		}
	}
	if len(res.HostKeys) == 0 {
		return HostKeysResult{}, remoteFailed(h, "no host keys in /etc/ssh/ssh_host_*_key.pub")
	}
	if req.Mesh && res.NodeKey == "" {
		return HostKeysResult{}, remoteFailed(h, "no public key for ~%s/.ssh/id_ed25519", user)
	}
	if err := checkVerifiedKey(h, parsed); err != nil {
		return HostKeysResult{}, err
	}
	res.Changed = len(notes) > 0
	res.Note = strings.Join(notes, "; ")
	return res, nil
}

// checkVerifiedKey makes sure that one of keys is the key the worker's known_hosts
// file pins for h, when that file pins any plain key for it (a host authenticated by
// a host certificate has none, and is not checked).
func checkVerifiedKey(h remote.Host, keys []remote.PublicKey) error {
	ok, err := remote.VerifiedAmong(h, keys)
	switch {
	case err != nil:
		return typed(err)
	case !ok:
		return remoteFailed(h, "none of the host keys in /etc/ssh/ssh_host_*_key.pub is the key %s pins for this host; does sshd use host keys from elsewhere (HostKey in sshd_config)?", h.KnownHostsFile)
	}
	return nil
}

// OperatorHostKeys are the host keys read from one host.
type OperatorHostKeys struct {
	Host remote.Host `json:"host"`
	Keys []string    `json:"keys"` // "TYPE BASE64"
}

// RecordOperatorKnownHostsRequest lists hosts with their host keys.
type RecordOperatorKnownHostsRequest struct {
	Hosts []OperatorHostKeys `json:"hosts"`
}

// RecordOperatorKnownHostsResult names the hosts whose keys were appended.
type RecordOperatorKnownHostsResult struct {
	Changed []string `json:"changed,omitempty"` // host names
}

// RecordOperatorKnownHosts appends to each host's KnownHostsFile (on the worker) the
// host keys it lacks for the host's address, so that the worker can verify any of
// the host's key types later. The keys were read over connections whose host key was
// verified against that same file (strictly, or pinned on first use by policy), so
// they are as trustworthy as the key already pinned there. Lines are only appended
// (file created 0600 when missing); a key @revoked in the file is never added.
func (k *Keys) RecordOperatorKnownHosts(ctx context.Context, req RecordOperatorKnownHostsRequest) (RecordOperatorKnownHostsResult, error) {
	var res RecordOperatorKnownHostsResult
	for _, hk := range req.Hosts {
		h := hk.Host
		if err := h.Validate(); err != nil {
			return RecordOperatorKnownHostsResult{}, typed(err)
		}
		keys, err := parseKeyLines(h, hk.Keys)
		if err != nil {
			return RecordOperatorKnownHostsResult{}, err
		}
		pubs := make([]remote.PublicKey, len(keys))
		for i, key := range keys {
			pubs[i] = key.key
		}
		// One host at a time: an earlier host may have appended to the same file.
		added, err := remote.AddKnownHostKeys(h, pubs)
		if _, ok := remote.KindOf(err); ok {
			return RecordOperatorKnownHostsResult{}, typed(err)
		}
		if err != nil {
			return RecordOperatorKnownHostsResult{}, workerFilesFailed("recording host keys", err)
		}
		for _, key := range added {
			if activity.IsActivity(ctx) {
				activity.GetLogger(ctx).Info("recorded host key", "host", h.Name, "addr", remote.KnownHostsName(h.Addr()), "key", key.Describe(), "file", h.KnownHostsFile)
			}
		}
		if len(added) > 0 {
			res.Changed = append(res.Changed, h.Name)
		}
	}
	return res, nil
}

// MeshTarget is a host that another host logs in to.
