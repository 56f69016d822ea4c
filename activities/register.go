package activities

import (
	"go.temporal.io/sdk/worker"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// Register registers every activity of this package on reg, reaching hosts through
// r (the worker's remote.Pool). Activity names are the method names of the
// structs: SSH (RunRemoteCommand), Files (UploadFile), Keys, Playbooks
// (LoadPlaybook), Docker, Swarm and Consul; doc.go lists them all.
//
// files is the worker's file policy: LoadPlaybook reads playbooks under it, and
// every activity checks the worker files a request names against it (through
// r's Files method, which remote.Pool has). nil allows every path: only for a
// registry that never runs activities, such as the list of types.
func Register(reg worker.ActivityRegistry, r remote.Remote, playbookDir string, files *workerfs.Policy) {
	reg.RegisterActivity(NewSSH(r))
	reg.RegisterActivity(NewFiles(r))
	reg.RegisterActivity(NewKeys(r))
	reg.RegisterActivity(&Playbooks{dir: playbookDir, files: files})
	reg.RegisterActivity(NewDocker(r))
	reg.RegisterActivity(NewSwarm(r))
	reg.RegisterActivity(NewConsul(r))
}
