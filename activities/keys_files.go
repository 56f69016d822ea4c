package activities

import (
	"bytes"
	"context"
	"path"
	"strings"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// This file edits a user's ~/.ssh files on a host: authorized_keys and
// known_hosts, read whole, merged in Go (keys_merge.go), written back only when
// they change.

// EnsureAuthorizedKeysRequest lists the keys that User's authorized_keys must and
// must not hold.
type EnsureAuthorizedKeysRequest struct {
	Host remote.Host `json:"host"`
	User string      `json:"user,omitempty"` // default: the login user
	// Add are authorized_keys lines ("TYPE BASE64 COMMENT", no options), added when
	// their key is not in the file yet.
	Add []string `json:"add,omitempty"`
	// Remove are keys ("TYPE BASE64", comments ignored) whose lines are removed.
	Remove []string `json:"remove,omitempty"`
}

// FileEditResult says what an edit of a file in ~/.ssh did.
type FileEditResult struct {
	Changed bool `json:"changed"`
	Added   int  `json:"added,omitempty"`   // lines added
	Removed int  `json:"removed,omitempty"` // lines removed (unwanted, stale or duplicate)
	// FixedAttrs: mode or owner of ~/.ssh or the file was corrected.
	FixedAttrs bool `json:"fixedAttrs,omitempty"`
}

// EnsureAuthorizedKeys makes ~USER/.ssh/authorized_keys on the host hold each key of
// Add exactly once and none of Remove. Keys are compared by type and base64 blob;
// comments and options are ignored, and every other line (comments, other keys,
// lines it cannot parse) is kept as it is. ~/.ssh ends up 0700 and the file 0600,
// both owned by USER. The file is rewritten (atomically) only when its content
// changes.
func (k *Keys) EnsureAuthorizedKeys(ctx context.Context, req EnsureAuthorizedKeysRequest) (FileEditResult, error) {
	h := req.Host
	user, err := keysUser(h, req.User)
	if err != nil {
		return FileEditResult{}, err
	}
	add, err := parseKeyLines(h, req.Add)
	if err != nil {
		return FileEditResult{}, err
	}
	remove, err := parseKeyLines(h, req.Remove)
	if err != nil {
		return FileEditResult{}, err
	}
	for _, r := range remove {
		for _, a := range add {
			if r.key.Equal(a.key) {
				return FileEditResult{}, hostInvalid(h, "key %s is both to add and to remove", a.key.Describe())
			}
		}
	}
	defer k.heartbeats(ctx, "authorized_keys")()
	st, err := k.readSSHFile(ctx, h, user, "authorized_keys")
	if err != nil {
		return FileEditResult{}, err
	}
	content, added, removed := mergeAuthorizedKeys(st.content, add, remove)
	res := FileEditResult{Added: added, Removed: removed}
	res.Changed, res.FixedAttrs, err = k.writeSSHFile(ctx, h, st, content, 0o600)
	return res, err
}

// KnownHostsEntry is one host whose host keys go into known_hosts files.
type KnownHostsEntry struct {
	Name    string   `json:"name"`    // inventory name; also recorded, as another node may use it
	Address string   `json:"address"` // as the inventory has it
	Port    int      `json:"port"`    // 0 means 22
	Keys    []string `json:"keys"`    // "TYPE BASE64"
}

// EnsureKnownHostsRequest lists the hosts that User's known_hosts must know.
type EnsureKnownHostsRequest struct {
	Host    remote.Host       `json:"host"`
	User    string            `json:"user,omitempty"` // default: the login user
	Entries []KnownHostsEntry `json:"entries"`
}

// EnsureKnownHosts makes ~USER/.ssh/known_hosts on the host list every entry's keys
// under its address and its name (with the port when not 22), each once. Lines that
// name only an entry's host with a key of a type the host no longer has that key of
// (a reinstalled host) are removed; every other line is kept.
func (k *Keys) EnsureKnownHosts(ctx context.Context, req EnsureKnownHostsRequest) (FileEditResult, error) {
	h := req.Host
	user, err := keysUser(h, req.User)
	if err != nil {
		return FileEditResult{}, err
	}
	entries, err := parseKnownHostsEntries(h, req.Entries)
	if err != nil {
		return FileEditResult{}, err
	}
	defer k.heartbeats(ctx, "known_hosts")()
	st, err := k.readSSHFile(ctx, h, user, "known_hosts")
	if err != nil {
		return FileEditResult{}, err
	}
	content, added, removed := mergeKnownHosts(st.content, entries)
	mode := uint32(0o600)
	if st.file.kind == "file" {
		mode = st.file.mode &^ 0o022 // keep the file's mode, but never writable by others
	}
	res := FileEditResult{Added: added, Removed: removed}
	res.Changed, res.FixedAttrs, err = k.writeSSHFile(ctx, h, st, content, mode)
	return res, err
}

// sshFile is a file in a user's ~/.ssh on a host, as read.
type sshFile struct {
	user     string
	uid, gid string
	dir      string   // ~USER/.ssh
	path     string   // dir/NAME
	dirState hostFile // kind "file" (a directory), "absent" or "other"
	file     hostFile // kind "file", "absent", "symlink" or "other"
	content  []byte
}

// maxSSHFile bounds what is read of a file in ~/.ssh.
const maxSSHFile = 4 << 20

func (k *Keys) readSSHFile(ctx context.Context, h remote.Host, user, name string) (*sshFile, error) {
	c := sshFileReadScript.cmd(user, name)
	c.Sudo = h.Sudo
	out, r, err := k.rem.capture(ctx, h, c, maxSSHFile)
	if err != nil {
		return nil, err
	}
	if r.ExitCode != 0 {
		return nil, remoteFailed(h, "reading ~%s/.ssh/%s (exit %d): %s", user, name, r.ExitCode, oneLine(r.Stderr))
	}
	head, content, ok := bytes.Cut(out, []byte("\n---\n"))
	if !ok {
		return nil, remoteFailed(h, "unexpected output reading ~%s/.ssh/%s: %q", user, name, truncate(string(out), 200))
	}
	st := &sshFile{user: user, content: content}
	var home string
	for line := range strings.SplitSeq(string(head), "\n") {
		kind, rest, _ := strings.Cut(line, " ")
		switch kind {
		case "id":
			st.uid, st.gid, _ = strings.Cut(rest, " ")
		case "home":
			home = rest
		case "dir":
			st.dirState, err = parseAttrs(rest)
		case "file":
			st.file, err = parseAttrs(rest)
		}
		if err != nil {
			return nil, remoteFailed(h, "unexpected output reading ~%s/.ssh/%s: %q", user, name, line)
		}
	}
	if st.uid == "" || st.gid == "" || !path.IsAbs(home) || st.dirState.kind == "" || st.file.kind == "" {
		return nil, remoteFailed(h, "unexpected output reading ~%s/.ssh/%s: %q", user, name, truncate(string(head), 200))
	}
	st.dir = path.Join(home, ".ssh")
	st.path = path.Join(st.dir, name)
	switch {
	case st.dirState.kind == "other":
		return nil, remoteFailed(h, "%s exists and is not a directory", st.dir)
	case st.file.kind == "symlink":
		return nil, remoteFailed(h, "%s is a symbolic link; clusterflow does not replace it (make it a plain file)", st.path)
	case st.file.kind == "other":
		return nil, remoteFailed(h, "%s exists and is not a regular file", st.path)
	}
	return st, nil
}

// writeSSHFile makes st's file hold content with mode, owned by the user, in a ~/.ssh
// that is 0700 and owned by the user. Content is written only when it differs from
// what was read, through a temporary file renamed over the old one, and checked by
// checksum afterwards (writeChecked). changed reports a content change or a fixed
// mode or owner; fixed reports the latter alone.
func (k *Keys) writeSSHFile(ctx context.Context, h remote.Host, st *sshFile, content []byte, mode uint32) (changed, fixed bool, err error) {
	if st.dirState.kind == "absent" || st.dirState.mode != 0o700 || st.dirState.uid != st.uid {
		c := sshDirScript.cmd(st.dir, st.uid+":"+st.gid)
		if err := hostStep(ctx, k.rem, h, "preparing "+st.dir, c.Argv); err != nil {
			return false, false, err
		}
		fixed = st.dirState.kind != "absent"
		changed = true
	}
	if st.file.kind == "file" && bytes.Equal(content, st.content) {
		c, err := fixAttrs(ctx, k.rem, h, st.path, st.file, remote.Attrs{Mode: mode, Owner: st.uid, Group: st.gid})
		return changed || c, fixed || c, err
	}
	w := wantData(st.path, content, remote.Attrs{Mode: mode})
	if h.User != st.user || h.Sudo {
		// Someone else's file (or written through sudo): give it to its user. A user
		// writing their own file owns the new one already.
		w.attrs.Owner, w.attrs.Group = st.uid, st.gid
	}
	if err := writeChecked(ctx, k.rem, h, w, func(string) {}, nil); err != nil {
		return false, fixed, err
	}
	return true, fixed, nil
}
