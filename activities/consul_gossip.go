package activities

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"go.temporal.io/sdk/activity"

	"github.com/clusterflow/clusterflow/internal/rules"
	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// GossipKeyRequest names the gossip key file on the worker.
type GossipKeyRequest struct {
	Path string `json:"path"` // absolute path on the worker
}

// GossipKeyInfo identifies the gossip key without revealing it.
type GossipKeyInfo struct {
	Path string `json:"path"`
	// KeyID is "sha256:" and 16 hex digits of a hash of the key: the same key gives
	// the same ID, and the ID gives nothing away about the key.
	KeyID     string `json:"keyId"`
	Generated bool   `json:"generated,omitempty"`
}

// gossipKeyBytes is the size of generated keys (what `consul keygen` makes).
const gossipKeyBytes = 32

// EnsureGossipKey makes sure the gossip encryption key file exists on the worker: 32
// random bytes, base64, mode 0600 (its directory is created 0700 when missing). The
// file is created exclusively (a complete temporary file hard-linked into place), so
// two workers racing to create it end up with the same key. An existing file is
// read and checked (base64 of 16, 24 or 32 bytes, as Consul accepts) and its mode
// tightened to 0600. Only the path and the key ID are returned.
func (c *Consul) EnsureGossipKey(ctx context.Context, req GossipKeyRequest) (GossipKeyInfo, error) {
	if err := checkGossipKeyPath(req.Path); err != nil {
		return GossipKeyInfo{}, err
	}
	// The key may be made here: the file must lie where the worker allows writing.
	if err := c.rem.workerFile("gossipKeyFile", req.Path, workerfs.Write); err != nil {
		return GossipKeyInfo{}, err
	}
	info := GossipKeyInfo{Path: req.Path}
	if _, err := os.Stat(req.Path); errors.Is(err, fs.ErrNotExist) {
		created, err := createGossipKey(req.Path)
		if err != nil {
			return GossipKeyInfo{}, err
		}
		info.Generated = created
	}
	_, id, err := readGossipKey(req.Path)
	if err != nil {
		return GossipKeyInfo{}, err
	}
	info.KeyID = id
	if activity.IsActivity(ctx) {
		activity.GetLogger(ctx).Info("gossip key ready", "path", req.Path, "keyId", id, "generated", info.Generated)
	}
	return info, nil
}

func checkGossipKeyPath(p string) error {
	switch {
	case p == "":
		return invalidInput("gossipKeyFile is empty: give the absolute path of the gossip key file on the worker")
	case !rules.WorkerPath(p):
		return invalidInput(fmt.Sprintf("gossipKeyFile %q must be a clean absolute path on the worker", p))
	}
	return nil
}

// createGossipKey writes a new key to p, unless another run created p meanwhile
// (created is then false).
func createGossipKey(p string) (created bool, err error) {
	raw := make([]byte, gossipKeyBytes)
	if _, err := rand.Read(raw); err != nil {
		return false, workerFilesFailed("generating a gossip key", err)
	}
	created, err = createExclusive(p, []byte(base64.StdEncoding.EncodeToString(raw)+"\n"), 0o600)
	if err != nil {
		return false, workerFilesFailed("writing the gossip key "+p, err)
	}
	return created, nil
}

// readGossipKey reads and checks the key file at p, tightening its mode to 0600. It
// returns the key (base64, as Consul's encrypt setting takes it) and its ID. Error
// messages never quote the file's content.
func readGossipKey(p string) (key, id string, err error) {
	data, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", "", invalidInput(fmt.Sprintf("gossip key file %s does not exist on this worker", p))
		}
		return "", "", workerFilesFailed("reading the gossip key "+p, err)
	}
	key = strings.TrimSpace(string(data))
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil || (len(raw) != 16 && len(raw) != 24 && len(raw) != 32) {
		return "", "", invalidInput(fmt.Sprintf("gossip key file %s does not hold a key Consul accepts (base64 of 16, 24 or 32 bytes, as `consul keygen` prints); fix or remove it", p))
	}
	if err := tightenMode(p, 0o600); err != nil {
		return "", "", workerFilesFailed("chmod "+p, err)
	}
	return key, gossipKeyID(raw), nil
}

// gossipKeyID names a key by a hash of it.
func gossipKeyID(raw []byte) string {
	sum := sha256.Sum256(append([]byte("clusterflow consul gossip key id\x00"), raw...))
	return "sha256:" + hex.EncodeToString(sum[:8])
}
