package activities

import (
	"context"
	"errors"
	"testing"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
)

// The tests in this package run against a real OpenSSH server on loopback addresses
// (internal/sshtest). They are skipped without /usr/sbin/sshd unless
// CLUSTERFLOW_REQUIRE_SSHD is set.

// requireAppErr checks that err is an application error of the given type and
// retryability, and returns it.
func requireAppErr(t *testing.T, err error, typ string, retryable bool) *temporal.ApplicationError {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("want a %s application error, got %T: %v", typ, err, err)
	}
	if appErr.Type() != typ {
		t.Fatalf("error type %q, want %q: %v", appErr.Type(), typ, err)
	}
	if appErr.NonRetryable() == retryable {
		t.Fatalf("%s: retryable=%v, want %v", typ, !appErr.NonRetryable(), retryable)
	}
	return appErr
}

// activityEnv returns a test activity environment whose activity contexts end when
// the returned cancel is called.
func activityEnv(t *testing.T, acts ...any) (*testsuite.TestActivityEnvironment, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{BackgroundActivityContext: ctx})
	for _, a := range acts {
		env.RegisterActivity(a)
	}
	return env, cancel
}
