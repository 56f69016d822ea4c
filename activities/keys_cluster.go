package activities

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.temporal.io/sdk/activity"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/rules"
	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// This file is the worker side of DistributeKeys: the cluster key pair on the
// worker's disk. The private key is created, read and renamed here and nowhere
// else: no request or result carries it, it is never logged or heartbeated; only
// public keys and fingerprints travel (they are fine in history).

const clusterKeyComment = "clusterflow-cluster-key"

// Suffixes of the cluster key's companion files on the worker.
const (
	NextKeySuffix = rules.NextKeySuffix // the new pair while a rotation is in progress
	OldKeySuffix  = rules.OldKeySuffix  // the pair a rotation replaced, kept once
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
	if err := k.checkKeyPath(req.ClusterKey); err != nil {
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
	if err := k.checkKeyPath(req.ClusterKey); err != nil {
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
	if cur.Fingerprint() == req.Fingerprint {
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
	if got := ns.Fingerprint(); got != req.Fingerprint {
		return PromoteClusterKeyResult{}, invalidInput(fmt.Sprintf("%s holds key %s, not %s, the key the hosts were given; did another run start a rotation?", next, got, req.Fingerprint))
	}
	// 1. Keep the current pair as .old.
	curPub, err := publicLineFor(key, cur)
	if err != nil {
		return PromoteClusterKeyResult{}, err
	}
	if err := writeFileAtomic(key+OldKeySuffix, curData, 0o600); err != nil {
		return PromoteClusterKeyResult{}, workerFilesFailed("keeping the old cluster key", err)
	}
	if err := writeFileAtomic(key+OldKeySuffix+".pub", []byte(curPub+"\n"), 0o644); err != nil {
		return PromoteClusterKeyResult{}, workerFilesFailed("keeping the old cluster key", err)
	}
	// 2. The next pair becomes the cluster key: one rename, atomic over the old file.
	if err := os.Rename(next, key); err != nil {
		return PromoteClusterKeyResult{}, workerFilesFailed("promoting the next cluster key", err)
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
			"old", cur.Fingerprint())
	}
	return PromoteClusterKeyResult{Current: info, Changed: true}, nil
}

// checkKeyPath refuses key paths that are not absolute file paths on the worker.
func (k *Keys) checkKeyPath(p string) error {
	switch {
	case p == "":
		return invalidInput("clusterKey is empty: give the absolute path of the cluster key on the worker")
	case !rules.WorkerPath(p):
		return invalidInput(fmt.Sprintf("clusterKey %q must be %s on the worker", p, rules.WorkerPathRule))
	case rules.ClusterKeyCompanion(p):
		return invalidInput(fmt.Sprintf("clusterKey %q names one of a cluster key's companion files (.pub, .next, .old); give the private key's path", p))
	}
	// The key and its companions are made and replaced here: the worker must allow
	// writing where it lies.
	return k.rem.workerFile("clusterKey", p, workerfs.Write)
}

// ensureKeyPair loads the private key at p, or generates an ed25519 one when there is
// none, fixes its mode to 0600 and makes p+".pub" match it. A .pub that already holds
// the same key keeps its comment.
func ensureKeyPair(p string) (KeyInfo, error) {
	data, err := os.ReadFile(p)
	generated := false
	var pub remote.PublicKey
	switch {
	case errors.Is(err, fs.ErrNotExist):
		pub, generated, err = createKeyPair(p)
		if err != nil {
			return KeyInfo{}, err
		}
	case err != nil:
		return KeyInfo{}, workerFilesFailed("reading key "+p, err)
	default:
		if pub, err = parsePrivate(p, data); err != nil {
			return KeyInfo{}, err
		}
		if err := tightenMode(p, 0o600); err != nil {
			return KeyInfo{}, workerFilesFailed("chmod "+p, err)
		}
	}
	line, err := publicLineFor(p, pub)
	if err != nil {
		return KeyInfo{}, err
	}
	return KeyInfo{Path: p, PublicKey: line, Fingerprint: pub.Fingerprint(), Generated: generated}, nil
}

// publicLineFor returns the authorized_keys line of pub, from p+".pub" when that
// file holds the same key, else writing p+".pub" anew (0644).
func publicLineFor(p string, pub remote.PublicKey) (string, error) {
	if data, err := os.ReadFile(p + ".pub"); err == nil {
		if k, comment, _, err := remote.ParseAuthorizedKey(string(data)); err == nil && k.Equal(pub) {
			return k.AuthorizedLine(comment), nil
		}
	}
	line := pub.AuthorizedLine(clusterKeyComment)
	if err := writeFileAtomic(p+".pub", []byte(line+"\n"), 0o644); err != nil {
		return "", workerFilesFailed("writing "+p+".pub", err)
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
		return "", "", workerFilesFailed("reading "+p, err)
	}
	pub, err := parsePrivate(p, data)
	if err != nil {
		return "", "", err
	}
	return pub.AuthorizedLine(clusterKeyComment), pub.Fingerprint(), nil
}

// createKeyPair writes a new ed25519 private key to p, or loads the one another run
// created there meanwhile (created is then false).
func createKeyPair(p string) (remote.PublicKey, bool, error) {
	priv, pub, err := remote.NewKeyPair(clusterKeyComment)
	if err != nil {
		return remote.PublicKey{}, false, workerFilesFailed("generating a key", err)
	}
	created, err := createExclusive(p, priv, 0o600)
	if err != nil {
		return remote.PublicKey{}, false, workerFilesFailed("writing key "+p, err)
	}
	if created {
		return pub, true, nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return remote.PublicKey{}, false, workerFilesFailed("reading key "+p, err)
	}
	pub, err = parsePrivate(p, data)
	return pub, false, err
}

// parsePrivate reads the private key file p (data) and returns its public half.
func parsePrivate(p string, data []byte) (remote.PublicKey, error) {
	pub, err := remote.ParsePrivateKey(data)
	switch {
	case errors.Is(err, remote.ErrPassphrase):
		return pub, invalidInput(fmt.Sprintf("key %s is protected by a passphrase; the cluster key must not be (it is used unattended)", p))
	case err != nil:
		// The parser's message never quotes key material.
		return pub, invalidInput(fmt.Sprintf("%s is not a private key clusterflow can read (%v)", p, err))
	}
	return pub, nil
}
