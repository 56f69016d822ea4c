package activities

import (
	"fmt"
	"net"
	"strconv"

	"go.temporal.io/sdk/temporal"

	"github.com/clusterflow/clusterflow/playbooks"
)

// Error types that activities in this package return, as Temporal application error
// types (temporal.ApplicationError.Type()). Workflows and retry policies match on
// these strings, so they are part of the contract: do not rename them.
//
// Activities always return these errors unwrapped: the Temporal SDK reads the type
// and retryability of an *temporal.ApplicationError only when it is the returned
// error itself, not one wrapped by fmt.Errorf.
const (
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
	// ErrRemoteFailed: a remote helper step of an upload (checksum, chown, chmod,
	// SFTP write or rename) was refused by the host: permission denied, no such user,
	// missing directory, full disk. Non-retryable: the host or the playbook needs a fix.
	ErrRemoteFailed = "RemoteFailed"
	// ErrChecksumMismatch: after an upload the host's file does not have the content
	// just written, e.g. because something else wrote it meanwhile. Retryable.
	ErrChecksumMismatch = "ChecksumMismatch"
)

// invalidInput is the error for a request that can never succeed as given.
func invalidInput(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, ErrInvalidInput, nil)
}

// hostLabel names a host in messages: `host master (127.0.0.2:22)`.
func hostLabel(h playbooks.Host) string {
	addr := hostAddr(h)
	if h.Name == "" {
		return "host " + addr
	}
	return fmt.Sprintf("host %s (%s)", h.Name, addr)
}

// hostAddr is the host's "address:port", the form used for dialling and for
// known_hosts look-ups. A zero port means 22.
func hostAddr(h playbooks.Host) string {
	port := h.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(h.Address, strconv.Itoa(port))
}

// hostError builds an error about one host; the message starts with the host label.
// Causes are folded into the message text rather than attached: the message is what
// the Web UI and the run summary show, and it should read as one sentence.
func hostError(h playbooks.Host, typ string, retryable bool, format string, args ...any) error {
	msg := hostLabel(h) + ": " + fmt.Sprintf(format, args...)
	if retryable {
		return temporal.NewApplicationError(msg, typ)
	}
	return temporal.NewNonRetryableApplicationError(msg, typ, nil)
}

func hostKeyMismatch(h playbooks.Host, format string, args ...any) error {
	return hostError(h, ErrHostKeyMismatch, false, format, args...)
}

func hostKeyUnknown(h playbooks.Host, format string, args ...any) error {
	return hostError(h, ErrHostKeyUnknown, false, format, args...)
}

func authFailed(h playbooks.Host, format string, args ...any) error {
	return hostError(h, ErrAuthFailed, false, format, args...)
}

func hostInvalid(h playbooks.Host, format string, args ...any) error {
	return hostError(h, ErrInvalidInput, false, format, args...)
}

func hostUnreachable(h playbooks.Host, format string, args ...any) error {
	return hostError(h, ErrHostUnreachable, true, format, args...)
}

func remoteFailed(h playbooks.Host, format string, args ...any) error {
	return hostError(h, ErrRemoteFailed, false, format, args...)
}
