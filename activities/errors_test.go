package activities

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// TestErrorTypes: every Err constant of errors.go has its retryability in
// errorTypes, the type strings are the recorded ones, and NonRetryableErrorTypes
// lists exactly the never-retried ones.
func TestErrorTypes(t *testing.T) {
	src, err := os.ReadFile("errors.go")
	if err != nil {
		t.Fatal(err)
	}
	consts := regexp.MustCompile(`(?m)^\t(Err\w+) += "(\w+)"$`).FindAllStringSubmatch(string(src), -1)
	if len(consts) != len(errorTypes) || len(consts) != 30 {
		t.Fatalf("errors.go declares %d types, errorTypes has %d (want 30)", len(consts), len(errorTypes))
	}
	for _, c := range consts {
		if _, ok := errorTypes[c[2]]; !ok {
			t.Errorf("%s (%q) has no retryability in errorTypes", c[1], c[2])
		}
	}
	// Recorded histories and the workflows match on these strings.
	for typ, want := range map[string]string{ErrQuorum: "QuorumRefused", ErrWorkerFiles: "WorkerFilesFailed", ErrInvalidInput: "InvalidInput", ErrHostUnreachable: "HostUnreachable"} {
		if typ != want {
			t.Errorf("type %q, want %q", typ, want)
		}
	}
	never := NonRetryableErrorTypes()
	if !slices.IsSorted(never) || !slices.Contains(never, ErrHostKeyMismatch) || slices.Contains(never, ErrHostUnreachable) ||
		slices.Contains(never, ErrLoginFailed) || slices.Contains(never, ErrBackupFailed) || len(never) != 18 {
		t.Errorf("NonRetryableErrorTypes = %v", never)
	}
	for _, typ := range never {
		requireAppErr(t, newError(typ, "x"), typ, false)
	}
}

// TestTyped: the remote layer's kinds become their types, found through wrapping;
// other errors pass as they are.
func TestTyped(t *testing.T) {
	for kind, want := range map[remote.Kind]struct {
		typ       string
		retryable bool
	}{
		remote.Invalid: {ErrInvalidInput, false}, remote.Unreachable: {ErrHostUnreachable, true},
		remote.HostKeyMismatch: {ErrHostKeyMismatch, false}, remote.HostKeyUnknown: {ErrHostKeyUnknown, false},
		remote.AuthFailed: {ErrAuthFailed, false}, remote.Refused: {ErrRemoteFailed, false},
	} {
		err := typed(fmt.Errorf("docker client: %w", &remote.Error{Kind: kind, Msg: "host h (192.0.2.1:22): it went wrong"}))
		if msg := requireAppErr(t, err, want.typ, want.retryable).Message(); msg != "host h (192.0.2.1:22): it went wrong" {
			t.Errorf("%s: message %q", kind, msg)
		}
	}
	plain := errors.New("plain")
	if typed(plain) != plain || typed(nil) != nil {
		t.Error("typed changed an error of no kind")
	}
	var ae *temporal.ApplicationError
	if !errors.As(packageManagerBusy(testHost, 7, "busy"), &ae) || ae.NextRetryDelay() != 7 || ae.NonRetryable() {
		t.Errorf("packageManagerBusy: %v", ae)
	}
}
