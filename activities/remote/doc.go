// Package remote is how clusterflow reaches a host: SSH connections (pooled, one
// per host and identity per worker, through jump hosts), host key checking against
// known_hosts files (strict or trust-on-first-use), commands that die with their
// caller, files (written through a session that checks them as they arrive, read
// over SFTP), streams to the host's unix sockets and ports (the Docker
// Engine API, Consul's HTTP API), and OpenSSH's key formats.
//
// It is the only package of clusterflow's activities that imports
// golang.org/x/crypto/ssh or github.com/pkg/sftp. The activities use it through
// the Remote interface (Runner, FS, Dialer and Dial), which the Pool implements and
// remotetest.Fake imitates for unit tests; what to do on a host is theirs, how to
// get there is this package's.
//
// Errors are *Error, whose Kind says what went wrong (unreachable, host key
// mismatch, refused...), with a message that starts with the host's label. The
// activities turn kinds into Temporal error types; nothing here decides about
// retrying. A command's non-zero exit status is a Result, not an error.
//
// Host is the connection spec of one host. Its JSON form is the one recorded in
// workflow histories, so its field names do not change.
package remote
