package remote

import (
	"errors"
	"fmt"
)

// Kind classifies what went wrong on the way to a host. The activities turn each
// kind into a Temporal error type with a fixed retryability (activities/errors.go).
type Kind int

const (
	// Invalid: the request or the host's connection spec is wrong (an empty address,
	// a missing identity file, a command with a NUL byte). Asking again fails again.
	Invalid Kind = iota + 1
	// Unreachable: connection refused, timed out, reset or dropped, also in the
	// middle of a command. It may pass.
	Unreachable
	// HostKeyMismatch: the host presented a key other than the one pinned in its
	// known_hosts file, or a revoked one. It may be an attack.
	HostKeyMismatch
	// HostKeyUnknown: the host is not in its known_hosts file and the policy is
	// strict: a person has to check and add the key.
	HostKeyUnknown
	// AuthFailed: the server refused every offered key, or the key cannot be used
	// (passphrase-protected, no agent).
	AuthFailed
	// Refused: the host refused a step of a file transfer (permission denied, no
	// such user or directory, full disk, no SFTP subsystem).
	Refused
	// Mismatch: the host wrote other bytes than were sent (a checksum or size
	// differs after a transfer). Sending again may work.
	Mismatch
)

var kindNames = map[Kind]string{
	Invalid: "invalid", Unreachable: "unreachable", HostKeyMismatch: "host key mismatch",
	HostKeyUnknown: "host key unknown", AuthFailed: "authentication failed", Refused: "refused",
	Mismatch: "mismatch",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is a failure to reach or use a host. Its message starts with the host's
// label and reads as one sentence: causes are folded into the text, not wrapped,
// since the text is what the Web UI and a run's summary show.
type Error struct {
	Kind Kind
	Msg  string // with the host's label
}

func (e *Error) Error() string { return e.Msg }

// KindOf returns the kind of the first *Error in err's chain.
func KindOf(err error) (Kind, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind, true
	}
	return 0, false
}

func hostErr(h Host, k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: h.Label() + ": " + fmt.Sprintf(format, args...)}
}

func invalid(h Host, format string, args ...any) *Error {
	return hostErr(h, Invalid, format, args...)
}

func unreachable(h Host, format string, args ...any) *Error {
	return hostErr(h, Unreachable, format, args...)
}

func refused(h Host, format string, args ...any) *Error {
	return hostErr(h, Refused, format, args...)
}
