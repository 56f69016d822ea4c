package activities

import (
	"go.temporal.io/sdk/worker"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// Register registers every activity of this package on reg, reaching hosts through
// r (the worker's remote.Pool). Activity names are the method names of the
// structs: SSH (RunRemoteCommand), Files (UploadFile), Keys, Playbooks
// (LoadPlaybook), Docker, Swarm and Consul; doc.go lists them all.
func Register(reg worker.ActivityRegistry, r remote.Remote, playbookDir string) {
	reg.RegisterActivity(NewSSH(r))
	reg.RegisterActivity(NewFiles(r))
	reg.RegisterActivity(NewKeys(r))
	reg.RegisterActivity(NewPlaybooks(playbookDir))
	reg.RegisterActivity(NewDocker(r))
	reg.RegisterActivity(NewSwarm(r))
	reg.RegisterActivity(NewConsul(r))
}
