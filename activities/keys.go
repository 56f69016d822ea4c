package activities

import (
	"context"
	"time"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/rules"
)

// The activities of the DistributeKeys procedure. Two kinds:
//
//   - worker side (EnsureClusterKey, PromoteClusterKey, RecordOperatorKnownHosts):
//     files on the worker's disk (keys_cluster.go, keys_hosts.go);
//   - host side (ReadHostKeys, EnsureAuthorizedKeys, EnsureKnownHosts, VerifyMesh,
//     VerifyKeyLogin): over the host's connection. A remote file is read whole, the
//     new content is computed here in Go (keys_merge.go), and written back only when
//     it differs, atomically (keys_files.go).
//
// Every activity is idempotent: run twice, the second run changes nothing.

// Keys manages SSH keys on the worker and on hosts. Its exported methods are
// activities.
type Keys struct {
	rem            typedRemote
	heartbeatEvery time.Duration
}

// NewKeys returns the key activities, reaching hosts through r.
func NewKeys(r remote.Remote) *Keys {
	return &Keys{rem: typedRemote{r}, heartbeatEvery: defaultHeartbeat}
}

// keysUser is the user whose ~/.ssh is managed: user, or the login user.
func keysUser(h remote.Host, user string) (string, error) {
	if user == "" {
		user = h.User
	}
	if !rules.UserName(user) {
		return "", hostInvalid(h, "user %q is not a valid user name", user)
	}
	return user, nil
}

// heartbeats keeps an activity of several remote steps heartbeating phase.
func (k *Keys) heartbeats(ctx context.Context, phase string) (stop func()) {
	return heartbeats(ctx, k.heartbeatEvery, func() any { return phase })
}
