// Package activities holds clusterflow's Temporal activities: the code that acts on
// hosts (over SSH, SFTP and the Docker Engine API) and on the worker's own files, on
// behalf of the workflows. It has no workflow code.
//
// # What lives here
//
// Every exported method of these structs is an activity, registered by Register
// under its method name (so helpers stay unexported):
//
//   - SSH (command.go): RunRemoteCommand.
//   - Files (upload.go): UploadFile.
//   - Playbooks (playbook.go): LoadPlaybook.
//   - Keys (keys_*.go): EnsureClusterKey, PromoteClusterKey, RecordOperatorKnownHosts,
//     ReadHostKeys, EnsureAuthorizedKeys, EnsureKnownHosts, VerifyMesh, VerifyKeyLogin.
//   - Docker (docker_*.go): DetectOS, InstallDockerPackages, ConfigureDockerDaemon,
//     AddDockerUsers, StartDockerEngine, VerifyDockerEngine.
//   - Consul (consul_*.go): EnsureGossipKey, InstallConsul, ConfigureConsul,
//     StartConsul, VerifyConsul.
//   - Swarm (swarm_*.go, swarmca*.go, image.go, upgrade.go): SwarmState, InitSwarm,
//     JoinSwarm, ListSwarmNodes, FindManager, UpdateNode, WaitDrained, RemoveNode,
//     EnsureNetwork, InspectSwarmCA, StartCARotation, WatchCARotation,
//     ReadNodeCertificate, ApplyService, WatchService, LoadImage, UpgradeState,
//     DrainForUpgrade, WaitNodeReady, WaitConverged, BackupSwarmState.
//   - Swarm, for the workloads (stack.go, build.go, teardown.go): LoadStack,
//     EnsureStackNetworks, EnsureStackObjects, ApplyStackService,
//     RollbackStackService, CleanupStack, BuildImage, DistributeImage,
//     RemoveSwarmObjects, RemoveVolume.
//
// What several of them share has a file of its own: hostop.go (an activity of
// several steps on one host: phase, heartbeats, a change carried across
// attempts), daemon.go (keeping a daemon running under systemd, the lab nodes'
// supervisor or SysV, for the engine and the agent), apt.go (apt and dpkg),
// files.go (a host's file made to hold given content), worker_files.go (files on
// the worker's disk), workerdir.go (reading a step's files under the playbook's
// directory: build contexts, registry password files), swarm_spec.go (comparing a
// whole service spec with the engine's), registry.go (registry credentials by
// reference, digest pinning), heartbeat.go, text.go.
//
// # Hosts
//
// Hosts are reached through the remote layer (package remote): the activities get
// a remote.Remote in their constructors (the worker's remote.Pool; a
// remotetest.Fake in unit tests) and never open a connection, session or SFTP
// client themselves. Commands on hosts are argv lists, every element quoted; the
// longer ones are the shell scripts in scripts/ (scripts.go), which take their
// inputs as arguments.
//
// # Errors
//
// Errors are Temporal application errors whose types are the Err* constants of
// errors.go, each made by one constructor that fixes whether it is retried, so
// workflows and retry policies can tell a host that is down (retryable) from a
// wrong host key, a refused login or a bad request (not retryable). The remote
// layer's error kinds become those types in one place (typed). A command's
// non-zero exit status is a result, not an error.
//
// # Adding an activity
//
// A method on the struct it belongs with, in a file named after its concept, with
// a request and a result type (their JSON field names are recorded in workflow
// histories: never rename them); check the host before acting, heartbeat while
// waiting (hostOp), return errors from the constructors of errors.go (a new type
// goes there, with its retryability); name it in the list above (doc_test.go checks
// that the list is complete). Remote scripts go to scripts/ with a header saying
// what they take and print; `make lint` runs sh -n and shellcheck on them.
package activities
