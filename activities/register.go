package activities

import "go.temporal.io/sdk/worker"

// Register registers every activity of this package on r. Activity names are the
// method names: RunRemoteCommand, UploadFile, LoadPlaybook.
func Register(r worker.ActivityRegistry, pool *Pool, playbookDir string) {
	r.RegisterActivity(NewSSH(pool))
	r.RegisterActivity(NewFiles(pool))
	r.RegisterActivity(NewKeys(pool))
	r.RegisterActivity(NewPlaybooks(playbookDir))
	r.RegisterActivity(NewDocker(pool))
	r.RegisterActivity(NewSwarm(pool))
	r.RegisterActivity(NewConsul(pool))
}
