package activities

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// Error types that activities return, as Temporal application error types
// (temporal.ApplicationError.Type()). Workflows, retry policies and recorded
// histories match on these strings, so they are part of the contract: do not
// rename them. Every error of a type is made by that type's constructor below,
// which fixes whether it is retried; a call site never decides.
//
// Activities always return these errors unwrapped: the Temporal SDK reads the type
// and retryability of an *temporal.ApplicationError only when it is the returned
// error itself, not one wrapped by fmt.Errorf.
const (
	// Reaching hosts (from the remote layer's error kinds, see typed).

	// ErrHostKeyMismatch: the host presented a key other than the one pinned in its
	// known_hosts file (or a revoked one). Non-retryable: it may be an attack.
	ErrHostKeyMismatch = "HostKeyMismatch"
	// ErrHostKeyUnknown: the host is not in its known_hosts file and the policy is
	// strict. Non-retryable: a person has to check and add the key.
	ErrHostKeyUnknown = "HostKeyUnknown"
	// ErrAuthFailed: the server refused every offered key, or the key cannot be used
	// (passphrase-protected, no agent). Non-retryable.
	ErrAuthFailed = "AuthFailed"
	// ErrInvalidInput: the request itself is wrong (missing file, bad template, bad
	// field). Non-retryable: the same input fails the same way every time.
	ErrInvalidInput = "InvalidInput"
	// ErrHostUnreachable: connection refused, timed out, reset or dropped, also in the
	// middle of a command. Retryable.
	ErrHostUnreachable = "HostUnreachable"
	// ErrRemoteFailed: a step on the host was refused (an upload's checksum, chown,
	// chmod, SFTP write or rename; a helper script): permission denied, no such
	// user, missing directory, full disk. Non-retryable: the host or the playbook
	// needs a fix.
	ErrRemoteFailed = "RemoteFailed"
	// ErrChecksumMismatch: after an upload the host's file does not have the content
	// just written, e.g. because something else wrote it meanwhile. Retryable.
	ErrChecksumMismatch = "ChecksumMismatch"

	// Files on the worker.

	// ErrWorkerFiles: a file operation on the worker failed (cluster key files, the
	// gossip key, the operator's known_hosts): permissions, a full disk. Retryable.
	ErrWorkerFiles = "WorkerFilesFailed"

	// InstallDocker (and the apt source of ConsulBootstrap).

	// ErrUnsupportedOS: the host is not Debian, Ubuntu or a derivative of them with
	// apt and dpkg. Non-retryable; the message names what /etc/os-release says.
	ErrUnsupportedOS = "UnsupportedOS"
	// ErrPackageManagerBusy: apt or dpkg kept its lock for longer than the lock
	// timeout (another apt run, unattended-upgrades). Retryable, with a delay.
	ErrPackageManagerBusy = "PackageManagerBusy"
	// ErrPackageUnavailable: apt cannot find the package or the pinned version, its
	// dependencies cannot be satisfied (an incomplete offline bundle), or the
	// repository is unusable (bad key, no Release file). Non-retryable.
	ErrPackageUnavailable = "PackageUnavailable"
	// ErrPackageInstallFailed: apt failed for another reason, most often a mirror
	// that could not be reached. Retryable.
	ErrPackageInstallFailed = "PackageInstallFailed"
	// ErrInvalidDaemonConfig: the host's /etc/docker/daemon.json is not a JSON
	// object. Non-retryable: a person has to look at the file.
	ErrInvalidDaemonConfig = "InvalidDaemonConfig"
	// ErrEngineNotReady: the engine did not answer after it was started, or its API
	// could not be reached over SSH. Retryable.
	ErrEngineNotReady = "EngineNotReady"

	// DistributeKeys.

	// ErrLoginFailed: a login that the procedure has just set up does not work (a
	// mesh login from one host to another). Retryable when the cause looks transient
	// (refused, timed out); not when the server refused the key or the host key did
	// not verify.
	ErrLoginFailed = "LoginFailed"

	// ConsulBootstrap.

	// ErrGossipKeyMismatch: the gossip key file on the worker running the activity
	// is not the key the run started with (the file was replaced meanwhile, or
	// workers on different machines have different files). Non-retryable.
	ErrGossipKeyMismatch = "GossipKeyMismatch"
	// ErrConsulDownloadFailed: the host could not download the release zip.
	// Retryable.
	ErrConsulDownloadFailed = "ConsulDownloadFailed"
	// ErrConsulNotReady: the agent did not answer after it was started, or the
	// cluster did not reach the expected state (a leader, the expected Raft peers,
	// every member alive) within the verification time. Retryable.
	ErrConsulNotReady = "ConsulNotReady"

	// SwarmInit, SwarmNodes, RotateCA.

	// ErrQuorum: the operation would leave fewer reachable managers than Raft
	// quorum needs. Non-retryable; the message carries the arithmetic.
	ErrQuorum = "QuorumRefused"
	// ErrSwarmConflict: the host belongs to another swarm, is locked, or the
	// playbook asks for something the swarm cannot do as it stands (a network
	// that exists with other options). Non-retryable: a person decides.
	ErrSwarmConflict = "SwarmConflict"
	// ErrNoManager: no host of the inventory answered as a reachable manager.
	// Retryable: a manager may be restarting.
	ErrNoManager = "NoManager"
	// ErrDrainTimeout: a drained node's tasks did not come up elsewhere in time.
	// Non-retryable; the message says which services are short.
	ErrDrainTimeout = "DrainTimeout"
	// ErrSwarmAPI: the engine refused or failed a swarm call for a reason that
	// may pass (leader election, a node still joining). Retryable.
	ErrSwarmAPI = "SwarmAPI"

	// DeployService.

	// ErrServiceNotFound: updateService names a service that does not exist.
	// Non-retryable: deployService creates services.
	ErrServiceNotFound = "ServiceNotFound"
	// ErrServiceSpec: the engine refused the wanted spec (an unknown network, a
	// bad mount). Non-retryable: the playbook needs a fix.
	ErrServiceSpec = "ServiceSpec"
	// ErrImageTarball: the image tarball cannot be read, is not a `docker save`
	// archive, or does not hold the image the step names. Non-retryable.
	ErrImageTarball = "ImageTarball"

	// BuildImage.

	// ErrImageBuild: the engine's builder refused the build (a Dockerfile error, a
	// command of it that failed, a FROM image it cannot find). Non-retryable; the
	// message has the builder's last lines.
	ErrImageBuild = "ImageBuildFailed"

	// RollingNodeUpgrade.

	// ErrNodeNotReady: an upgraded node did not come back Ready in time.
	// Non-retryable: the node is left drained for a person to look at.
	ErrNodeNotReady = "NodeNotReady"
	// ErrConvergeTimeout: the swarm's services did not get all their tasks running
	// in time. Non-retryable; the message lists the services that are short.
	ErrConvergeTimeout = "ConvergeTimeout"
	// ErrBackupFailed: the Raft state backup could not be written. Retryable, but
	// not when the host holds no manager state or its engine cannot be stopped.
	ErrBackupFailed = "BackupFailed"
)

// How the errors of a type are retried.
type retry int

const (
	never   retry = iota // the same input fails the same way
	always               // it may pass
	byCause              // the type has a constructor for each case
)

// errorTypes is every error type with how it is retried.
var errorTypes = map[string]retry{
	ErrHostKeyMismatch: never, ErrHostKeyUnknown: never, ErrAuthFailed: never, ErrInvalidInput: never,
	ErrHostUnreachable: always, ErrRemoteFailed: never, ErrChecksumMismatch: always,
	ErrWorkerFiles:   always,
	ErrUnsupportedOS: never, ErrPackageManagerBusy: always, ErrPackageUnavailable: never,
	ErrPackageInstallFailed: always, ErrInvalidDaemonConfig: never, ErrEngineNotReady: always,
	ErrLoginFailed:       byCause,
	ErrGossipKeyMismatch: never, ErrConsulDownloadFailed: always, ErrConsulNotReady: always,
	ErrQuorum: never, ErrSwarmConflict: never, ErrNoManager: always, ErrDrainTimeout: never, ErrSwarmAPI: always,
	ErrServiceNotFound: never, ErrServiceSpec: never, ErrImageTarball: never, ErrImageBuild: never,
	ErrNodeNotReady: never, ErrConvergeTimeout: never, ErrBackupFailed: byCause,
}

// NonRetryableErrorTypes lists, sorted, the error types whose errors are never
// retried, for retry policies (temporal.RetryPolicy.NonRetryableErrorTypes). The
// activities mark these errors non-retryable already; a policy that names them
// also stops the retries of an activity run by an older worker.
func NonRetryableErrorTypes() []string {
	var out []string
	for typ, r := range errorTypes {
		if r == never {
			out = append(out, typ)
		}
	}
	slices.Sort(out)
	return out
}

// newError makes an error of type typ, retried as errorTypes says.
func newError(typ, msg string) error {
	switch errorTypes[typ] {
	case never:
		return temporal.NewNonRetryableApplicationError(msg, typ, nil)
	case always:
		return temporal.NewApplicationError(msg, typ)
	}
	panic("activities: error type " + typ + " has constructors of its own")
}

// about starts a message with the host's label: `host master (127.0.0.2:22): ...`.
// The message is what the Web UI and the run summary show, and it reads as one
// sentence: causes are folded into the text rather than attached.
func about(h remote.Host, format string, args ...any) string {
	return h.Label() + ": " + fmt.Sprintf(format, args...)
}

// kindTypes maps the remote layer's error kinds to error types.
var kindTypes = map[remote.Kind]string{
	remote.Invalid:         ErrInvalidInput,
	remote.Unreachable:     ErrHostUnreachable,
	remote.HostKeyMismatch: ErrHostKeyMismatch,
	remote.HostKeyUnknown:  ErrHostKeyUnknown,
	remote.AuthFailed:      ErrAuthFailed,
	remote.Refused:         ErrRemoteFailed,
	remote.Mismatch:        ErrChecksumMismatch,
}

// typed turns an error of the remote layer (anywhere in err's chain) into the
// application error of its kind; other errors (ctx's, already typed) pass as they
// are.
func typed(err error) error {
	if err == nil {
		return nil
	}
	var re *remote.Error
	if errors.As(err, &re) {
		return newError(kindTypes[re.Kind], re.Msg)
	}
	return err
}

// The constructors, one per type (two for the types retried by cause).

func invalidInput(msg string) error { return newError(ErrInvalidInput, msg) }

func hostInvalid(h remote.Host, format string, args ...any) error {
	return newError(ErrInvalidInput, about(h, format, args...))
}

func hostUnreachable(h remote.Host, format string, args ...any) error {
	return newError(ErrHostUnreachable, about(h, format, args...))
}

func remoteFailed(h remote.Host, format string, args ...any) error {
	return newError(ErrRemoteFailed, about(h, format, args...))
}

func checksumMismatch(h remote.Host, format string, args ...any) error {
	return newError(ErrChecksumMismatch, about(h, format, args...))
}

// workerFilesFailed is a failure of a file operation on the worker: a full disk or
// a busy file system may recover; bad paths are caught before.
func workerFilesFailed(what string, err error) error {
	return newError(ErrWorkerFiles, fmt.Sprintf("on the worker: %s: %v", what, err))
}

func unsupportedOS(h remote.Host, format string, args ...any) error {
	return newError(ErrUnsupportedOS, about(h, format, args...))
}

// packageManagerBusy asks for the next attempt after delay: the lock holder (an
// apt run, unattended-upgrades) is likely still at it.
func packageManagerBusy(h remote.Host, delay time.Duration, format string, args ...any) error {
	return temporal.NewApplicationErrorWithOptions(about(h, format, args...), ErrPackageManagerBusy,
		temporal.ApplicationErrorOptions{NextRetryDelay: delay})
}

func packageUnavailable(h remote.Host, format string, args ...any) error {
	return newError(ErrPackageUnavailable, about(h, format, args...))
}

func packageInstallFailed(h remote.Host, format string, args ...any) error {
	return newError(ErrPackageInstallFailed, about(h, format, args...))
}

func invalidDaemonConfig(h remote.Host, format string, args ...any) error {
	return newError(ErrInvalidDaemonConfig, about(h, format, args...))
}

func engineNotReady(h remote.Host, format string, args ...any) error {
	return newError(ErrEngineNotReady, about(h, format, args...))
}

// loginFailed is a login failure that may pass (refused, timed out).
func loginFailed(h remote.Host, format string, args ...any) error {
	return temporal.NewApplicationError(about(h, format, args...), ErrLoginFailed)
}

// loginRefused is a login failure that will fail the same way again (the key was
// refused, the host key did not verify).
func loginRefused(h remote.Host, format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(about(h, format, args...), ErrLoginFailed, nil)
}

func gossipKeyMismatch(h remote.Host, format string, args ...any) error {
	return newError(ErrGossipKeyMismatch, about(h, format, args...))
}

func consulDownloadFailed(h remote.Host, format string, args ...any) error {
	return newError(ErrConsulDownloadFailed, about(h, format, args...))
}

func consulNotReady(h remote.Host, format string, args ...any) error {
	return newError(ErrConsulNotReady, about(h, format, args...))
}

func quorumRefused(msg string) error { return newError(ErrQuorum, msg) }

func swarmConflict(h remote.Host, format string, args ...any) error {
	return newError(ErrSwarmConflict, about(h, format, args...))
}

func noManager(msg string) error { return newError(ErrNoManager, msg) }

func drainTimeout(h remote.Host, format string, args ...any) error {
	return newError(ErrDrainTimeout, about(h, format, args...))
}

func swarmAPI(h remote.Host, format string, args ...any) error {
	return newError(ErrSwarmAPI, about(h, format, args...))
}

func serviceNotFound(msg string) error { return newError(ErrServiceNotFound, msg) }

func serviceSpecRefused(h remote.Host, format string, args ...any) error {
	return newError(ErrServiceSpec, about(h, format, args...))
}

func imageTarball(msg string) error { return newError(ErrImageTarball, msg) }

func imageBuildFailed(h remote.Host, format string, args ...any) error {
	return newError(ErrImageBuild, about(h, format, args...))
}

func nodeNotReady(h remote.Host, format string, args ...any) error {
	return newError(ErrNodeNotReady, about(h, format, args...))
}

func convergeTimeout(msg string) error { return newError(ErrConvergeTimeout, msg) }

// backupFailed is a backup that may work when tried again.
func backupFailed(h remote.Host, format string, args ...any) error {
	return temporal.NewApplicationError(about(h, format, args...), ErrBackupFailed)
}

// backupRefused is a backup that cannot work on this host (no manager state, no
// way to stop the engine).
func backupRefused(h remote.Host, format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(about(h, format, args...), ErrBackupFailed, nil)
}
