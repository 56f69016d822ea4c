package activities

import (
	"context"
	"strings"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/rules"
)

// DockerUsersRequest is the input of AddDockerUsers.
type DockerUsersRequest struct {
	Host  remote.Host `json:"host"`
	Users []string    `json:"users,omitempty"`
}

// DockerUsersResult says what AddDockerUsers did.
type DockerUsersResult struct {
	Changed bool     `json:"changed"`
	Added   []string `json:"added,omitempty"` // users that joined the docker group now
}

// AddDockerUsers makes every user of req.Users a member of the docker group (which
// it creates if the packages did not). Users already in it are left alone; an
// unknown user is a non-retryable ErrInvalidInput and nobody is changed.
//
// Group membership is read at login: a user's SSH connections opened before this
// do not have the group (VerifyDockerEngine opens a fresh one for non-root users).
func (d *Docker) AddDockerUsers(ctx context.Context, req DockerUsersRequest) (DockerUsersResult, error) {
	h := req.Host
	if len(req.Users) == 0 {
		return DockerUsersResult{}, nil
	}
	for _, u := range req.Users {
		if !rules.UserName(u) {
			return DockerUsersResult{}, hostInvalid(h, "%q is not a user name", u)
		}
	}
	op, done := d.begin(ctx, h)
	defer done()
	op.acting("users")
	r, err := op.run(ctx, "users", dockerUsersScript.cmd(req.Users...))
	if err != nil {
		return DockerUsersResult{}, err
	}
	if r.ExitCode == 3 {
		users := strings.Fields(strings.TrimPrefix(strings.TrimSpace(r.Stdout), "missing"))
		return DockerUsersResult{}, hostInvalid(h, "no such user on the host: %s; create the user first", strings.Join(users, ", "))
	}
	var res DockerUsersResult
	for line := range strings.Lines(r.Stdout) {
		line = strings.TrimSpace(line)
		switch {
		case line == "group":
			res.Changed = true
		case strings.HasPrefix(line, "added "):
			res.Changed = true
			res.Added = append(res.Added, strings.TrimPrefix(line, "added "))
		}
	}
	if r.ExitCode != 0 {
		return res, remoteFailed(h, "adding users to the docker group failed (exit %d): %s", r.ExitCode, strings.TrimSpace(r.Stderr))
	}
	return res, nil
}
