package activities

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/clusterflow/clusterflow/playbooks"
)

// This file holds the activities of the DistributeKeys procedure. Two kinds:
//
//   - worker side (EnsureClusterKey, PromoteClusterKey, RecordOperatorKnownHosts):
//     files on the worker's disk. The cluster private key is created, read and renamed
//     here and nowhere else: no request or result carries it, it is never logged or
//     heartbeated; only public keys and fingerprints travel (they are fine in history);
//   - host side (ReadHostKeys, EnsureAuthorizedKeys, EnsureKnownHosts, VerifyMesh,
//     VerifyKeyLogin): over the pooled SSH connection. A remote file is read whole,
//     the new content is computed here in Go (mergeAuthorizedKeys, mergeKnownHosts),
//     and written back only when it differs, atomically (temporary file in the same
//     directory, then rename) with the upload activity's helpers.
//
// Every activity is idempotent: run twice, the second run changes nothing.

// Error types of the key activities, in addition to those of errors.go.
const (
	// ErrLoginFailed: a login that the procedure has just set up does not work (a
	// mesh login from one host to another). Retryable when the cause looks transient
	// (refused, timed out); not when the server refused the key or the host key did
	// not verify.
	ErrLoginFailed = "LoginFailed"
	// ErrWorkerFiles: a file operation on the worker failed (cluster key files, the
	// operator's known_hosts): permissions, a full disk. Retryable a few times.
	ErrWorkerFiles = "WorkerFilesFailed"
)

// Keys manages SSH keys on the worker and on hosts. Its exported methods are
// activities.
type Keys struct {
	pool           *Pool
	heartbeatEvery time.Duration
}

// NewKeys returns the key activities, using pool for connections.
func NewKeys(pool *Pool) *Keys {
	return &Keys{pool: pool, heartbeatEvery: 5 * time.Second}
}

// clusterKeyComment is the comment of generated cluster keys in .pub files and in
// authorized_keys.
const clusterKeyComment = "clusterflow-cluster-key"

// Suffixes of the cluster key's companion files on the worker.
const (
	NextKeySuffix = ".next" // the new pair while a rotation is in progress
	OldKeySuffix  = ".old"  // the pair a rotation replaced, kept once
)

// KeyInfo describes a key pair on the worker by its public half only.
type KeyInfo struct {
	Path        string `json:"path"`        // private key file on the worker
	PublicKey   string `json:"publicKey"`   // authorized_keys line: "TYPE BASE64 COMMENT"
	Fingerprint string `json:"fingerprint"` // SHA256:...
	Generated   bool   `json:"generated,omitempty"`
}

// EnsureClusterKeyRequest names the cluster key file on the worker.
type EnsureClusterKeyRequest struct {
	ClusterKey string `json:"clusterKey"` // absolute path on the worker
	// Rotate also ensures the next pair at ClusterKey+".next" (reused when present,
	// so an interrupted rotation resumes with the same key).
	Rotate bool `json:"rotate,omitempty"`
}

// ClusterKeyInfo is the cluster key's public state.
type ClusterKeyInfo struct {
	Current KeyInfo  `json:"current"`
	Next    *KeyInfo `json:"next,omitempty"` // set when rotating
	// Retired is the public key of ClusterKey+".old", the pair the last rotation
	// replaced. It must not stay authorized anywhere: every run removes it.
	Retired string `json:"retired,omitempty"`
}

// EnsureClusterKey makes sure the cluster key pair exists on the worker: an ed25519
// key at req.ClusterKey (0600, directory created 0700 when missing) and its public
// half at ClusterKey+".pub". With Rotate it also makes the next pair at
// ClusterKey+".next", unless the cluster key was only just generated (nothing to
// rotate). It returns public keys and fingerprints only.
func (k *Keys) EnsureClusterKey(ctx context.Context, req EnsureClusterKeyRequest) (ClusterKeyInfo, error) {
	if err := checkKeyPath(req.ClusterKey); err != nil {
		return ClusterKeyInfo{}, err
	}
	cur, err := ensureKeyPair(req.ClusterKey)
	if err != nil {
		return ClusterKeyInfo{}, err
	}
	info := ClusterKeyInfo{Current: cur}
	if req.Rotate && !cur.Generated {
		next, err := ensureKeyPair(req.ClusterKey + NextKeySuffix)
		if err != nil {
			return ClusterKeyInfo{}, err
		}
		if next.Fingerprint == cur.Fingerprint {
			return ClusterKeyInfo{}, invalidInput(fmt.Sprintf("%s%s holds the same key as %s; remove it to rotate", req.ClusterKey, NextKeySuffix, req.ClusterKey))
		}
		info.Next = &next
	}
	old, oldFP, err := readPublicOfPrivate(req.ClusterKey + OldKeySuffix)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return ClusterKeyInfo{}, err
	case oldFP != cur.Fingerprint && (info.Next == nil || oldFP != info.Next.Fingerprint):
		info.Retired = old
	}
	if activity.IsActivity(ctx) {
		activity.GetLogger(ctx).Info("cluster key ready", "path", req.ClusterKey, "fingerprint", cur.Fingerprint,
			"generated", cur.Generated, "rotating", info.Next != nil)
	}
	return info, nil
}

// PromoteClusterKeyRequest asks to make the next key the cluster key.
type PromoteClusterKeyRequest struct {
	ClusterKey string `json:"clusterKey"`
	// Fingerprint of the next key, as EnsureClusterKey reported it: the key that was
	// added and verified on the hosts. Promotion refuses any other.
	Fingerprint string `json:"fingerprint"`
}

// PromoteClusterKeyResult is the cluster key after promotion.
type PromoteClusterKeyResult struct {
	Current KeyInfo `json:"current"`
	Changed bool    `json:"changed"` // false: it had been promoted already
}

// PromoteClusterKey ends a rotation on the worker: the current pair is copied to
// ClusterKey+".old" (replacing an older one), then ClusterKey+".next" is renamed over
// ClusterKey and the .pub files follow. At every moment ClusterKey holds a complete
// key that the hosts accept, and a re-run after a crash at any point finishes the job.
func (k *Keys) PromoteClusterKey(ctx context.Context, req PromoteClusterKeyRequest) (PromoteClusterKeyResult, error) {
	if err := checkKeyPath(req.ClusterKey); err != nil {
		return PromoteClusterKeyResult{}, err
	}
	key, next := req.ClusterKey, req.ClusterKey+NextKeySuffix
	curData, err := os.ReadFile(key)
	if err != nil {
		return PromoteClusterKeyResult{}, invalidInput(fmt.Sprintf("cluster key %s: %v", key, err))
	}
	cur, err := parsePrivate(key, curData)
	if err != nil {
		return PromoteClusterKeyResult{}, err
	}
	if ssh.FingerprintSHA256(cur.PublicKey()) == req.Fingerprint {
		// Promoted already (a retry, or a re-run after a crash): finish the .pub files.
		info, err := ensureKeyPair(key)
		if err != nil {
			return PromoteClusterKeyResult{}, err
		}
		os.Remove(next + ".pub")
		return PromoteClusterKeyResult{Current: info}, nil
	}
	nextData, err := os.ReadFile(next)
	if err != nil {
		return PromoteClusterKeyResult{}, invalidInput(fmt.Sprintf("no next key to promote: %v", err))
	}
	ns, err := parsePrivate(next, nextData)
	if err != nil {
		return PromoteClusterKeyResult{}, err
	}
	if got := ssh.FingerprintSHA256(ns.PublicKey()); got != req.Fingerprint {
		return PromoteClusterKeyResult{}, invalidInput(fmt.Sprintf("%s holds key %s, not %s, the key the hosts were given; did another run start a rotation?", next, got, req.Fingerprint))
	}
	// 1. Keep the current pair as .old.
	curPub, err := publicLineFor(key, cur)
	if err != nil {
		return PromoteClusterKeyResult{}, err
	}
	if err := writeFileAtomic(key+OldKeySuffix, curData, 0o600); err != nil {
		return PromoteClusterKeyResult{}, localFailed("keeping the old cluster key", err)
	}
	if err := writeFileAtomic(key+OldKeySuffix+".pub", []byte(curPub+"\n"), 0o644); err != nil {
		return PromoteClusterKeyResult{}, localFailed("keeping the old cluster key", err)
	}
	// 2. The next pair becomes the cluster key: one rename, atomic over the old file.
	if err := os.Rename(next, key); err != nil {
		return PromoteClusterKeyResult{}, localFailed("promoting the next cluster key", err)
	}
	syncDir(filepath.Dir(key))
	// 3. The public half follows (ensureKeyPair rewrites a .pub that does not match).
	info, err := ensureKeyPair(key)
	if err != nil {
		return PromoteClusterKeyResult{}, err
	}
	os.Remove(next + ".pub")
	if activity.IsActivity(ctx) {
		activity.GetLogger(ctx).Info("cluster key rotated", "path", key, "fingerprint", info.Fingerprint,
			"old", ssh.FingerprintSHA256(cur.PublicKey()))
	}
	return PromoteClusterKeyResult{Current: info, Changed: true}, nil
}

// checkKeyPath refuses key paths that are not absolute file paths on the worker.
func checkKeyPath(p string) error {
	switch {
	case p == "":
		return invalidInput("clusterKey is empty: give the absolute path of the cluster key on the worker")
	case !filepath.IsAbs(p) || filepath.Clean(p) != p:
		return invalidInput(fmt.Sprintf("clusterKey %q must be a clean absolute path on the worker", p))
	case strings.HasSuffix(p, ".pub"):
		return invalidInput(fmt.Sprintf("clusterKey %q names a public key; give the private key's path", p))
	}
	return nil
}

// ensureKeyPair loads the private key at p, or generates an ed25519 one when there is
// none, fixes its mode to 0600 and makes p+".pub" match it. A .pub that already holds
// the same key keeps its comment.
func ensureKeyPair(p string) (KeyInfo, error) {
	data, err := os.ReadFile(p)
	generated := false
	var signer ssh.Signer
	switch {
	case errors.Is(err, fs.ErrNotExist):
		signer, generated, err = createKeyPair(p)
		if err != nil {
			return KeyInfo{}, err
		}
	case err != nil:
		return KeyInfo{}, localFailed("reading key "+p, err)
	default:
		if signer, err = parsePrivate(p, data); err != nil {
			return KeyInfo{}, err
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm() != 0o600 {
			if err := os.Chmod(p, 0o600); err != nil {
				return KeyInfo{}, localFailed("chmod "+p, err)
			}
		}
	}
	line, err := publicLineFor(p, signer)
	if err != nil {
		return KeyInfo{}, err
	}
	return KeyInfo{Path: p, PublicKey: line, Fingerprint: ssh.FingerprintSHA256(signer.PublicKey()), Generated: generated}, nil
}

// publicLineFor returns the authorized_keys line of signer, from p+".pub" when that
// file holds the same key, else writing p+".pub" anew (0644).
func publicLineFor(p string, signer ssh.Signer) (string, error) {
	pub := signer.PublicKey()
	if data, err := os.ReadFile(p + ".pub"); err == nil {
		if k, comment, _, _, err := ssh.ParseAuthorizedKey(data); err == nil && bytes.Equal(k.Marshal(), pub.Marshal()) {
			return authorizedLine(k, comment), nil
		}
	}
	line := authorizedLine(pub, clusterKeyComment)
	if err := writeFileAtomic(p+".pub", []byte(line+"\n"), 0o644); err != nil {
		return "", localFailed("writing "+p+".pub", err)
	}
	return line, nil
}

// readPublicOfPrivate returns the authorized_keys line and fingerprint of the private
// key at p (without writing anything); fs.ErrNotExist when there is none.
func readPublicOfPrivate(p string) (line, fingerprint string, err error) {
	data, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", "", err
		}
		return "", "", localFailed("reading "+p, err)
	}
	s, err := parsePrivate(p, data)
	if err != nil {
		return "", "", err
	}
	return authorizedLine(s.PublicKey(), clusterKeyComment), ssh.FingerprintSHA256(s.PublicKey()), nil
}

// createKeyPair writes a new ed25519 private key to p, or loads the one another run
// created there meanwhile (created is then false): the key is written to a temporary
// file and hard-linked to p, which fails when p exists.
func createKeyPair(p string) (ssh.Signer, bool, error) {
	dir := filepath.Dir(p)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, false, localFailed("creating the key directory", err)
		}
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, localFailed("generating a key", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, clusterKeyComment)
	if err != nil {
		return nil, false, localFailed("encoding the key", err)
	}
	tmp, err := writeTempFile(p, pem.EncodeToMemory(block), 0o600)
	if err != nil {
		return nil, false, localFailed("writing the key", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, p); err != nil {
		if errors.Is(err, fs.ErrExist) {
			data, rerr := os.ReadFile(p)
			if rerr != nil {
				return nil, false, localFailed("reading key "+p, rerr)
			}
			s, perr := parsePrivate(p, data)
			return s, false, perr
		}
		return nil, false, localFailed("writing key "+p, err)
	}
	syncDir(dir)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, false, localFailed("loading the new key", err)
	}
	return signer, true, nil
}

func parsePrivate(p string, data []byte) (ssh.Signer, error) {
	s, err := ssh.ParsePrivateKey(data)
	var ppErr *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &ppErr):
		return nil, invalidInput(fmt.Sprintf("key %s is protected by a passphrase; the cluster key must not be (it is used unattended)", p))
	case err != nil:
		// The parser's message never quotes key material.
		return nil, invalidInput(fmt.Sprintf("%s is not a private key clusterflow can read (%v)", p, err))
	}
	return s, nil
}

// writeTempFile writes data to a new temporary file next to name, synced, with perm.
func writeTempFile(name string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// writeFileAtomic replaces name by a complete new file (temporary file, rename).
func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	tmp, err := writeTempFile(name, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(filepath.Dir(name))
	return nil
}

// syncDir makes renames in dir durable, best effort.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// localFailed is a failure of a file operation on the worker. Retryable: a full disk
// or a busy file system may recover; bad paths are caught before.
func localFailed(what string, err error) error {
	return temporal.NewApplicationError(fmt.Sprintf("on the worker: %s: %v", what, err), ErrWorkerFiles)
}

// authorizedLine is "TYPE BASE64 COMMENT" (or without comment).
func authorizedLine(k ssh.PublicKey, comment string) string {
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	if c := strings.TrimSpace(comment); c != "" {
		line += " " + c
	}
	return line
}

// ---------------------------------------------------------------------------------
// Host side.

// userRE is what a portable user name looks like (POSIX, plus the trailing $ of
// machine accounts).
var userRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\$?$`)

// keysUser is the user whose ~/.ssh is managed: user, or the login user.
func keysUser(h playbooks.Host, user string) (string, error) {
	if user == "" {
		user = h.User
	}
	if !userRE.MatchString(user) {
		return "", hostInvalid(h, "user %q is not a valid user name", user)
	}
	return user, nil
}

// ReadHostKeysRequest asks for a host's public host keys, and with Mesh for its own
// key pair of User.
type ReadHostKeysRequest struct {
	Host playbooks.Host `json:"host"`
	User string         `json:"user,omitempty"` // default: the login user
	Mesh bool           `json:"mesh,omitempty"`
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

// readHostKeysScript prints "hostkey LINE" for every /etc/ssh/ssh_host_*_key.pub and,
// when $2 is "mesh", ensures ~$1/.ssh/id_ed25519 (made by ssh-keygen when missing,
// mode 0600, owned by $1) and prints "nodekey LINE". Lines "note ..." say what it
// changed. The private key never leaves the host.
const readHostKeysScript = `set -u
pw=$(getent passwd "$1") || { echo "user $1 does not exist on this host" >&2; exit 3; }
IFS=: read -r _ _ uid gid _ home _ <<EOF
$pw
EOF
for f in /etc/ssh/ssh_host_*_key.pub; do
  [ -f "$f" ] && printf 'hostkey %s\n' "$(head -n 1 "$f")"
done
[ "$2" = mesh ] || exit 0
d=$home/.ssh k=$home/.ssh/id_ed25519
if [ ! -d "$d" ]; then
  mkdir -p -m 0700 "$d" && chown "$uid:$gid" "$d" || exit 4
  echo "note created $d"
fi
if [ ! -e "$k" ]; then
  ssh-keygen -q -t ed25519 -N '' -C "$1@$(hostname)" -f "$k" </dev/null >&2 || exit 5
  chown "$uid:$gid" "$k" "$k.pub" || exit 4
  echo "note generated $k"
fi
if [ "$(stat -c '%a %u' "$k")" != "600 $uid" ]; then
  chown "$uid:$gid" "$k" && chmod 0600 "$k" || exit 4
  echo "note fixed mode and owner of $k"
fi
if [ ! -s "$k.pub" ]; then
  ssh-keygen -y -f "$k" </dev/null >"$k.pub" && chown "$uid:$gid" "$k.pub" || exit 5
  echo "note wrote $k.pub"
fi
printf 'nodekey %s\n' "$(head -n 1 "$k.pub")"`

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
	r, err := k.pool.run(ctx, h, remoteExec{argv: []string{"/bin/sh", "-c", readHostKeysScript, "clusterflow-hostkeys", user, mesh}, sudo: h.Sudo})
	if err != nil {
		return HostKeysResult{}, err
	}
	if r.exitCode != 0 {
		return HostKeysResult{}, remoteFailed(h, "reading host keys (exit %d): %s", r.exitCode, oneLine(r.stderr))
	}
	var res HostKeysResult
	var notes []string
	var parsed []ssh.PublicKey
	for line := range strings.SplitSeq(r.stdout, "\n") {
		kind, rest, _ := strings.Cut(line, " ")
		switch kind {
		case "hostkey":
			key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(rest))
			if err != nil {
				continue // an unreadable .pub file is not sshd's key either
			}
			res.HostKeys = append(res.HostKeys, authorizedLine(key, ""))
			parsed = append(parsed, key)
		case "nodekey":
			key, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(rest))
			if err != nil {
				return HostKeysResult{}, remoteFailed(h, "~%s/.ssh/id_ed25519.pub is not a public key: %v", user, err)
			}
			res.NodeKey = authorizedLine(key, comment)
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
func checkVerifiedKey(h playbooks.Host, keys []ssh.PublicKey) error {
	check, err := loadKnownHosts(h.KnownHostsFile)
	if err != nil {
		return hostInvalid(h, "cannot read known_hosts file %s: %v", h.KnownHostsFile, err)
	}
	pinned := false
	for _, key := range keys {
		err := check(hostAddr(h), &net.TCPAddr{IP: net.IPv4zero}, key)
		if err == nil {
			return nil
		}
		var keyErr *knownhosts.KeyError
		if errors.As(err, &keyErr) && len(keyErr.Want) > 0 {
			pinned = true
		}
	}
	if pinned {
		return remoteFailed(h, "none of the host keys in /etc/ssh/ssh_host_*_key.pub is the key %s pins for this host; does sshd use host keys from elsewhere (HostKey in sshd_config)?", h.KnownHostsFile)
	}
	return nil
}

// EnsureAuthorizedKeysRequest lists the keys that User's authorized_keys must and
// must not hold.
type EnsureAuthorizedKeysRequest struct {
	Host playbooks.Host `json:"host"`
	User string         `json:"user,omitempty"` // default: the login user
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
			if bytes.Equal(r.key.Marshal(), a.key.Marshal()) {
				return FileEditResult{}, hostInvalid(h, "key %s is both to add and to remove", describeKey(a.key))
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
	Host    playbooks.Host    `json:"host"`
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

// OperatorHostKeys are the host keys read from one host.
type OperatorHostKeys struct {
	Host playbooks.Host `json:"host"`
	Keys []string       `json:"keys"` // "TYPE BASE64"
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
	knownHostsWriteMu.Lock()
	defer knownHostsWriteMu.Unlock()
	var res RecordOperatorKnownHostsResult
	for _, hk := range req.Hosts {
		h := hk.Host
		if err := validateHost(h, 0); err != nil {
			return RecordOperatorKnownHostsResult{}, err
		}
		keys, err := parseKeyLines(h, hk.Keys)
		if err != nil {
			return RecordOperatorKnownHostsResult{}, err
		}
		// Loaded per host: an earlier host may have appended to the same file.
		check, err := loadKnownHosts(h.KnownHostsFile)
		if err != nil {
			return RecordOperatorKnownHostsResult{}, hostInvalid(h, "cannot read known_hosts file %s: %v", h.KnownHostsFile, err)
		}
		addr := knownhosts.Normalize(hostAddr(h))
		changed := false
		for _, key := range keys {
			err := check(hostAddr(h), &net.TCPAddr{IP: net.IPv4zero}, key.key)
			var revoked *knownhosts.RevokedError
			if err == nil || errors.As(err, &revoked) {
				continue
			}
			if err := appendKnownHost(h.KnownHostsFile, knownhosts.Line([]string{addr}, key.key)); err != nil {
				return RecordOperatorKnownHostsResult{}, localFailed("appending to "+h.KnownHostsFile, err)
			}
			changed = true
			if activity.IsActivity(ctx) {
				activity.GetLogger(ctx).Info("recorded host key", "host", h.Name, "addr", addr, "key", describeKey(key.key), "file", h.KnownHostsFile)
			}
		}
		if changed {
			res.Changed = append(res.Changed, h.Name)
		}
	}
	return res, nil
}

// MeshTarget is a host that another host logs in to.
type MeshTarget struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Port    int    `json:"port"` // 0 means 22
}

// VerifyMeshRequest asks Host to log in to every target as User.
type VerifyMeshRequest struct {
	Host    playbooks.Host `json:"host"`
	User    string         `json:"user,omitempty"` // default: the login user
	Targets []MeshTarget   `json:"targets"`
}

// VerifyMeshResult counts the logins made.
type VerifyMeshResult struct {
	Checked int `json:"checked"`
}

// verifyMeshScript logs in from this host, with ~$1/.ssh/id_ed25519 and only
// ~$1/.ssh/known_hosts, to each "NAME ADDRESS PORT" triple that follows, and prints
// "ok NAME" or "fail NAME RC MESSAGE" for each. Up to 8 logins run at once (each
// costs a TCP and SSH handshake, ~0.1-0.2 s of CPU at both ends); their results go
// to files in a private temporary directory and are printed at the end. The ssh
// processes are in the wrapper's process group, so a cancelled activity kills them.
const verifyMeshScript = `set -u
pw=$(getent passwd "$1") || { echo "user $1 does not exist on this host" >&2; exit 3; }
IFS=: read -r _ _ _ _ _ home _ <<EOF
$pw
EOF
user=$1; shift
out=$(mktemp -d) || exit 4
trap 'rm -rf "$out"' EXIT
trap 'exit 143' TERM INT
login() {
  if err=$(ssh -n -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=10 \
      -o IdentitiesOnly=yes -i "$home/.ssh/id_ed25519" \
      -o "UserKnownHostsFile=\"$home/.ssh/known_hosts\"" -o GlobalKnownHostsFile=/dev/null \
      -o LogLevel=ERROR -p "$3" -l "$user" -- "$2" true 2>&1 >/dev/null); then
    echo "ok $1"
  else
    rc=$?
    printf 'fail %s %s %s\n' "$1" "$rc" "$(printf '%s' "$err" | tr '\r\n' '  ' | cut -c1-300)"
  fi
}
n=0
while [ $# -ge 3 ]; do
  n=$((n+1))
  login "$1" "$2" "$3" >"$out/$n" &
  shift 3
  [ $((n % 8)) -ne 0 ] || wait
done
wait
[ "$n" -eq 0 ] || cat "$out"/*`

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
	argv := []string{"/bin/sh", "-c", verifyMeshScript, "clusterflow-mesh", user}
	for _, t := range req.Targets {
		if t.Address == "" || strings.HasPrefix(t.Address, "-") || strings.ContainsAny(t.Address+t.Name, " \t\n") {
			return VerifyMeshResult{}, hostInvalid(h, "mesh target %q has a bad address %q", t.Name, t.Address)
		}
		argv = append(argv, t.Name, t.Address, strconv.Itoa(portOrDefault(t.Port)))
	}
	e := remoteExec{argv: argv, sudo: h.Sudo}
	if activity.IsActivity(ctx) {
		e.heartbeatEvery = heartbeatInterval(ctx, k.heartbeatEvery)
		e.heartbeat = func(elapsed time.Duration, last string) {
			activity.RecordHeartbeat(ctx, CommandProgress{Phase: "mesh", ElapsedMs: elapsed.Milliseconds(), LastLine: last})
		}
	}
	r, err := k.pool.run(ctx, h, e)
	if err != nil {
		return VerifyMeshResult{}, err
	}
	if r.exitCode != 0 {
		return VerifyMeshResult{}, remoteFailed(h, "mesh check failed (exit %d): %s", r.exitCode, oneLine(r.stderr))
	}
	ok := 0
	var fails []string
	transient := true
	for line := range strings.SplitSeq(r.stdout, "\n") {
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
		return VerifyMeshResult{Checked: ok}, hostError(h, ErrLoginFailed, transient,
			"mesh login as %s failed for %d of %d hosts: %s", user, len(fails), len(req.Targets), strings.Join(fails, "; "))
	}
	if ok != len(req.Targets) {
		return VerifyMeshResult{Checked: ok}, remoteFailed(h, "mesh check reported %d logins of %d: %q", ok, len(req.Targets), r.stdout)
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
	Host         playbooks.Host `json:"host"`
	IdentityFile string         `json:"identityFile"` // absolute path on the worker
}

// VerifyKeyLogin opens a fresh SSH connection (not a pooled one) to the host as its
// login user, authenticating with IdentityFile only (no agent) and checking the host
// key strictly as usual, runs "true", and closes the connection. A jump host, when
// the host has one, is reached over the pool with its own credentials.
func (k *Keys) VerifyKeyLogin(ctx context.Context, req VerifyKeyLoginRequest) error {
	h := req.Host
	h.IdentityFile, h.UseAgent = req.IdentityFile, false
	if err := validateHost(h, 0); err != nil {
		return err
	}
	if h.IdentityFile == "" {
		return hostInvalid(h, "no identity file to verify")
	}
	defer k.heartbeats(ctx, "verify key login")()
	c, err := k.pool.dialHost(ctx, h)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	sess, err := c.NewSession()
	if err != nil {
		return hostUnreachable(h, "cannot open a session with %s: %v", req.IdentityFile, err)
	}
	defer sess.Close()
	if err := sess.Run("true"); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var exitErr *ssh.ExitError
		if errors.As(err, &exitErr) {
			return remoteFailed(h, "logged in with %s, but 'true' exited %d (a forced command?)", req.IdentityFile, exitErr.ExitStatus())
		}
		return hostUnreachable(h, "logged in with %s, but running 'true' failed: %v", req.IdentityFile, err)
	}
	return nil
}

// ---------------------------------------------------------------------------------
// Remote ~/.ssh files.

// sshFile is a file in a user's ~/.ssh on a host, as read.
type sshFile struct {
	user     string
	uid, gid string
	dir      string     // ~USER/.ssh
	path     string     // dir/NAME
	dirState remoteFile // kind "dir", "absent" or "other"
	file     remoteFile // kind "file", "absent", "symlink" or "other"
	content  []byte
}

// readSSHFileScript prints, for user $1 and file ~$1/.ssh/$2: "id UID GID",
// "home HOME", "dir MODE USER GROUP UID GID" (or "dir absent"/"dir other"), "file
// ..." likewise (or "file symlink"), a "---" line, then the file's content.
const readSSHFileScript = `set -u
pw=$(getent passwd "$1") || { echo "user $1 does not exist on this host" >&2; exit 3; }
IFS=: read -r _ _ uid gid _ home _ <<EOF
$pw
EOF
d=$home/.ssh f=$home/.ssh/$2
printf 'id %s %s\nhome %s\n' "$uid" "$gid" "$home"
if [ -d "$d" ]; then printf 'dir '; stat -L -c '%a %U %G %u %g' -- "$d"
elif [ -e "$d" ] || [ -L "$d" ]; then echo 'dir other'; else echo 'dir absent'; fi
if [ -L "$f" ]; then echo 'file symlink'
elif [ -f "$f" ]; then printf 'file '; stat -c '%a %U %G %u %g' -- "$f"
elif [ -e "$f" ]; then echo 'file other'; else echo 'file absent'; fi
echo ---
[ -f "$f" ] && [ ! -L "$f" ] && exec cat -- "$f"
exit 0`

// maxSSHFile bounds what is read of a file in ~/.ssh.
const maxSSHFile = 4 << 20

func (k *Keys) readSSHFile(ctx context.Context, h playbooks.Host, user, name string) (*sshFile, error) {
	out, r, err := k.pool.runCapture(ctx, h, remoteExec{argv: []string{"/bin/sh", "-c", readSSHFileScript, "clusterflow-read", user, name}, sudo: h.Sudo}, maxSSHFile)
	if err != nil {
		return nil, err
	}
	if r.exitCode != 0 {
		return nil, remoteFailed(h, "reading ~%s/.ssh/%s (exit %d): %s", user, name, r.exitCode, oneLine(r.stderr))
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

// parseAttrs reads "absent", "other", "symlink", or "MODE USER GROUP UID GID".
func parseAttrs(s string) (remoteFile, error) {
	switch s {
	case "absent", "other", "symlink":
		return remoteFile{kind: s}, nil
	}
	f := strings.Fields(s)
	if len(f) != 5 {
		return remoteFile{}, fmt.Errorf("bad attributes %q", s)
	}
	mode, err := strconv.ParseUint(f[0], 8, 32)
	if err != nil {
		return remoteFile{}, err
	}
	return remoteFile{kind: "file", mode: uint32(mode), user: f[1], group: f[2], uid: f[3], gid: f[4]}, nil
}

// writeSSHFile makes st's file hold content with mode, owned by the user, in a ~/.ssh
// that is 0700 and owned by the user. Content is written only when it differs from
// what was read, through a temporary file renamed over the old one (the upload
// activity's helpers), and checked by checksum afterwards. changed reports a content
// change or a fixed mode or owner; fixed reports the latter alone.
func (k *Keys) writeSSHFile(ctx context.Context, h playbooks.Host, st *sshFile, content []byte, mode uint32) (changed, fixed bool, err error) {
	f := &Files{pool: k.pool, heartbeatEvery: k.heartbeatEvery}
	owner := st.uid + ":" + st.gid
	if st.dirState.kind == "absent" || st.dirState.mode != 0o700 || st.dirState.uid != st.uid {
		const fixDir = `mkdir -p -m 0700 -- "$1" && chown "$2" -- "$1" && chmod 0700 -- "$1"`
		if err := f.exec(ctx, h, "preparing "+st.dir, []string{"/bin/sh", "-c", fixDir, "clusterflow-sshdir", st.dir, owner}); err != nil {
			return false, false, err
		}
		fixed = st.dirState.kind != "absent"
		changed = true
	}
	if st.file.kind == "file" && bytes.Equal(content, st.content) {
		c, err := f.fixAttrs(ctx, h, st.path, st.file, mode, st.uid, st.gid)
		return changed || c, fixed || c, err
	}

	sum := sha256.Sum256(content)
	src := &localContent{data: content, size: int64(len(content)), sum: hex.EncodeToString(sum[:]), isTmpl: true} // in memory
	req := UploadRequest{Host: h, Src: "(content made by clusterflow)", Dest: st.path}
	if h.User != st.user || h.Sudo {
		// Someone else's file (or written through sudo): give it to its user. A user
		// writing their own file owns the new one already.
		req.Owner, req.Group = st.uid, st.gid
	}
	prog := &uploadProgress{total: src.size}
	if h.Sudo {
		err = f.uploadSudo(ctx, h, req, mode, src, prog)
	} else {
		err = f.uploadDirect(ctx, h, req, mode, src, prog)
	}
	if err != nil {
		return false, fixed, err
	}
	after, err := f.remoteState(ctx, h, st.path)
	if err != nil {
		return true, fixed, err
	}
	if after.sha256 != src.sum {
		return true, fixed, hostError(h, ErrChecksumMismatch, true,
			"after writing %s the host's copy has SHA-256 %s, not %s; is something else writing it?", st.path, after.sha256, src.sum)
	}
	return true, fixed, nil
}

// ---------------------------------------------------------------------------------
// Pure logic: authorized_keys and known_hosts content.

// keyLine is a parsed public key with the line to write for it.
type keyLine struct {
	key  ssh.PublicKey
	line string // "TYPE BASE64 COMMENT"
}

func parseKeyLines(h playbooks.Host, lines []string) ([]keyLine, error) {
	out := make([]keyLine, 0, len(lines))
	for _, l := range lines {
		key, comment, options, _, err := ssh.ParseAuthorizedKey([]byte(l))
		if err != nil {
			return nil, hostInvalid(h, "%q is not a public key line: %v", truncate(l, 80), err)
		}
		if len(options) > 0 {
			return nil, hostInvalid(h, "public key line %q has options; give TYPE BASE64 [COMMENT]", truncate(l, 80))
		}
		out = append(out, keyLine{key: key, line: authorizedLine(key, comment)})
	}
	return out, nil
}

// authorizedKey parses one authorized_keys line; ok is false for blank and comment
// lines, lines it cannot parse, and cert-authority lines (which trust certificates
// signed by the key, not the key itself): those are never matched or touched.
func authorizedKey(line string) (ssh.PublicKey, bool) {
	t := strings.TrimSpace(line)
	if t == "" || strings.HasPrefix(t, "#") {
		return nil, false
	}
	key, _, options, _, err := ssh.ParseAuthorizedKey([]byte(t))
	if err != nil {
		return nil, false
	}
	for _, o := range options {
		if strings.EqualFold(o, "cert-authority") {
			return nil, false
		}
	}
	return key, true
}

// splitLines splits file content into lines without their newlines.
func splitLines(content []byte) []string {
	if len(content) == 0 {
		return nil
	}
	s := strings.TrimSuffix(string(content), "\n")
	return strings.Split(s, "\n")
}

func joinLines(lines []string) []byte {
	if len(lines) == 0 {
		return nil
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}

// mergeAuthorizedKeys returns content with every key of add present exactly once
// (the first line that has it is kept, later duplicates are dropped; missing keys are
// appended as add's line) and no line holding a key of remove. Other lines stay as
// they are. When nothing changes, the content is returned unchanged byte for byte.
func mergeAuthorizedKeys(content []byte, add, remove []keyLine) (out []byte, added, removed int) {
	want := map[string]bool{}
	for _, a := range add {
		want[string(a.key.Marshal())] = true
	}
	drop := map[string]bool{}
	for _, r := range remove {
		drop[string(r.key.Marshal())] = true
	}
	seen := map[string]bool{}
	var lines []string
	for _, line := range splitLines(content) {
		if key, ok := authorizedKey(line); ok {
			blob := string(key.Marshal())
			if drop[blob] || (want[blob] && seen[blob]) {
				removed++
				continue
			}
			seen[blob] = true
		}
		lines = append(lines, line)
	}
	for _, a := range add {
		blob := string(a.key.Marshal())
		if !seen[blob] {
			seen[blob] = true
			lines = append(lines, a.line)
			added++
		}
	}
	if added == 0 && removed == 0 {
		return content, 0, 0
	}
	return joinLines(lines), added, removed
}

// knownHost is one host for mergeKnownHosts: the names it is known by (normalized as
// in known_hosts: "addr", or "[addr]:port" when the port is not 22) and its keys.
type knownHost struct {
	names []string
	keys  []ssh.PublicKey
}

func parseKnownHostsEntries(h playbooks.Host, entries []KnownHostsEntry) ([]knownHost, error) {
	out := make([]knownHost, 0, len(entries))
	for _, e := range entries {
		if e.Address == "" || strings.ContainsAny(e.Address+e.Name, " \t\n,#*?!|") {
			return nil, hostInvalid(h, "known_hosts entry %q has a bad name or address %q", e.Name, e.Address)
		}
		port := strconv.Itoa(portOrDefault(e.Port))
		kh := knownHost{names: []string{knownhosts.Normalize(net.JoinHostPort(e.Address, port))}}
		if e.Name != "" && e.Name != e.Address {
			kh.names = append(kh.names, knownhosts.Normalize(net.JoinHostPort(e.Name, port)))
		}
		keys, err := parseKeyLines(h, e.Keys)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			kh.keys = append(kh.keys, k.key)
		}
		out = append(out, kh)
	}
	return out, nil
}

// hostPatternMatches tells whether a known_hosts host pattern names exactly name: the
// same text (case-insensitive), or a hashed entry ("|1|SALT|HASH") of it. Wildcard and
// negated patterns never match: such lines are left alone.
func hostPatternMatches(pattern, name string) bool {
	if strings.HasPrefix(pattern, "|1|") {
		parts := strings.Split(pattern[3:], "|")
		if len(parts) != 2 {
			return false
		}
		salt, err1 := base64.StdEncoding.DecodeString(parts[0])
		want, err2 := base64.StdEncoding.DecodeString(parts[1])
		if err1 != nil || err2 != nil {
			return false
		}
		mac := hmac.New(sha1.New, salt)
		mac.Write([]byte(name))
		return hmac.Equal(mac.Sum(nil), want)
	}
	return strings.EqualFold(pattern, name)
}

// mergeKnownHosts returns content in which every name of every host has each of the
// host's keys, once. For each missing (key, names) pair it appends one line naming
// all the names that lack the key. Lines that name only one host's names (plainly or
// hashed) are "managed": dropped when their key duplicates one already listed for
// all their names, or when the host no longer has that key but has another of the
// same type (the host was re-keyed). Keys marked @revoked in the file are never
// added. All other lines are kept as they are; when nothing changes, the content is
// returned unchanged byte for byte.
func mergeKnownHosts(content []byte, hosts []knownHost) (out []byte, added, removed int) {
	type nameKey struct{ name, blob string }
	present := map[nameKey]bool{}
	revoked := map[string]bool{}
	// hostOf resolves a pattern to the index of the host and the name it matches.
	hostOf := func(pattern string) (int, string) {
		for i, kh := range hosts {
			for _, n := range kh.names {
				if hostPatternMatches(pattern, n) {
					return i, n
				}
			}
		}
		return -1, ""
	}
	hasKey := func(kh knownHost, key ssh.PublicKey) (same, sameType bool) {
		for _, k := range kh.keys {
			if bytes.Equal(k.Marshal(), key.Marshal()) {
				return true, true
			}
			if k.Type() == key.Type() {
				sameType = true
			}
		}
		return false, sameType
	}

	var lines []string
	for _, line := range splitLines(content) {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			lines = append(lines, line)
			continue
		}
		marker, patterns, key, _, _, err := ssh.ParseKnownHosts([]byte(t))
		if err != nil || marker != "" {
			if err == nil && marker == "revoked" {
				revoked[string(key.Marshal())] = true
			}
			lines = append(lines, line)
			continue
		}
		blob := string(key.Marshal())
		// Which of our names does the line give, and is it about one host only?
		owner, managed := -1, len(patterns) > 0
		var names []string
		for _, p := range patterns {
			i, n := hostOf(p)
			if i < 0 || (owner >= 0 && i != owner) {
				managed = false
			}
			if i >= 0 {
				if owner < 0 {
					owner = i
				}
				names = append(names, n)
			}
		}
		if managed {
			same, sameType := hasKey(hosts[owner], key)
			if !same && sameType {
				removed++ // stale: the host has another key of this type now
				continue
			}
			if same {
				dup := true
				for _, n := range names {
					if !present[nameKey{n, blob}] {
						dup = false
					}
				}
				if dup {
					removed++
					continue
				}
			}
		}
		for _, n := range names {
			present[nameKey{n, blob}] = true
		}
		lines = append(lines, line)
	}
	for _, kh := range hosts {
		for _, key := range kh.keys {
			blob := string(key.Marshal())
			if revoked[blob] {
				continue
			}
			var missing []string
			for _, n := range kh.names {
				if !present[nameKey{n, blob}] {
					missing = append(missing, n)
					present[nameKey{n, blob}] = true
				}
			}
			if len(missing) > 0 {
				lines = append(lines, knownhosts.Line(missing, key))
				added++
			}
		}
	}
	if added == 0 && removed == 0 {
		return content, 0, 0
	}
	return joinLines(lines), added, removed
}

// ---------------------------------------------------------------------------------
// Helpers.

func portOrDefault(p int) int {
	if p == 0 {
		return 22
	}
	return p
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return truncate(s, 300)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// heartbeats records a heartbeat every heartbeatEvery (or a third of the activity's
// heartbeat timeout) until the returned stop is called, so that an activity made of
// several remote steps never goes silent. The detail is only the phase name. Outside
// an activity context it does nothing.
func (k *Keys) heartbeats(ctx context.Context, phase string) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	every := heartbeatInterval(ctx, k.heartbeatEvery)
	return tick(ctx, every, func() { activity.RecordHeartbeat(ctx, phase) })
}

// runCapture runs e on h like Pool.run, but keeps the whole standard output (up to
// limit bytes; more is an error) instead of a 4 KiB tail: for reading a file whose
// every line matters. Standard error is kept as a tail. Cancellation works as in
// Pool.run: closing stdin makes the wrapper kill the remote process group.
func (p *Pool) runCapture(ctx context.Context, h playbooks.Host, e remoteExec, limit int) ([]byte, execResult, error) {
	line, err := e.commandLine()
	if err != nil {
		return nil, execResult{}, hostInvalid(h, "%v", err)
	}
	sess, err := p.session(ctx, h)
	if err != nil {
		return nil, execResult{}, err
	}
	defer sess.Close()

	stdout := &capBuffer{limit: limit}
	sink := newOutputSink(tailMax)
	sess.Stdout = stdout
	sess.Stderr = sink.stderr()
	stdin, err := sess.StdinPipe()
	if err != nil {
		return nil, execResult{}, hostUnreachable(h, "cannot set up the session: %v", err)
	}
	if err := sess.Start(line); err != nil {
		p.evict(sess.pc, fmt.Sprintf("exec request failed: %v", err))
		return nil, execResult{}, hostUnreachable(h, "cannot start the command: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err := <-done:
		res, err := p.finish(h, sess, sink, err)
		if err != nil {
			return nil, res, err
		}
		if stdout.over {
			return nil, res, remoteFailed(h, "output of %s is larger than %d MiB", e.argv[0], limit>>20)
		}
		return stdout.buf.Bytes(), res, nil
	case <-ctx.Done():
		stdin.Close()
		select {
		case <-done:
		case <-time.After(cancelGrace):
		}
		return nil, execResult{}, ctx.Err()
	}
}

// capBuffer keeps what is written up to limit bytes and notes any excess.
type capBuffer struct {
	buf   bytes.Buffer
	limit int
	over  bool
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if room := c.limit - c.buf.Len(); len(p) > room {
		c.over = true
		c.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return c.buf.Write(p)
}
