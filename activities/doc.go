// Package activities holds clusterflow's Temporal activities: the code that touches
// the world (hosts over SSH and SFTP, playbook files on the worker) on behalf of the
// workflows. It has no workflow code.
//
// Activities are the exported methods of the structs that Register registers (SSH,
// Files, Playbooks); each struct gets its dependencies through its constructor.
// Every exported method of those structs is an activity, so helpers stay unexported.
//
// Connections come from a Pool, one per worker process, that keeps one SSH
// connection per host and checks host keys against the host's known_hosts file
// (strict or trust-on-first-use); see Pool.
//
// Errors are Temporal application errors whose types are the Err* constants, so
// workflows and retry policies can tell a host that is down (retryable) from a wrong
// host key, a refused login or a bad request (not retryable). A command's non-zero
// exit status is a result, not an error.
package activities
