package workflows

import "github.com/clusterflow/clusterflow/activities"

// Typed nil pointers to the activity structs. Workflows pass their method values to
// workflow.ExecuteActivity; the SDK uses only the method name, so the nil receiver
// is never dereferenced in workflow code.
var (
	sshActs      *activities.SSH
	fileActs     *activities.Files
	playbookActs *activities.Playbooks
	keyActs      *activities.Keys
	dockerActs   *activities.Docker
	consulActs   *activities.Consul
	swarmActs    *activities.Swarm
)
