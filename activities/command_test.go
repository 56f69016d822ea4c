package activities

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/sshtest"
)

func TestRunRemoteCommandExitCodeAndOutput(t *testing.T) {
	s := sshtest.New(t, 1)
	act := NewSSH(sshtest.Pool(t, remote.PoolOptions{}, nil))
	ctx := context.Background()

	res, err := act.RunRemoteCommand(ctx, CommandRequest{
		Host:    s.Host(0),
		Command: []string{"sh", "-c", "echo out; echo err >&2; exit 3"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || res.Stdout != "out\n" || res.Stderr != "err\n" || res.Skipped {
		t.Fatalf("result = %+v", res)
	}

	res, err = act.RunRemoteCommand(ctx, CommandRequest{Host: s.Host(0), Command: []string{"true"}})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("true: %+v, %v", res, err)
	}

	// A command that does not exist is exit 127 (a result), not an error.
	res, err = act.RunRemoteCommand(ctx, CommandRequest{Host: s.Host(0), Command: []string{"no-such-command-clusterflow"}})
	if err != nil || res.ExitCode != 127 || !strings.Contains(res.Stderr, "not found") {
		t.Fatalf("missing command: %+v, %v", res, err)
	}
}

func TestRunRemoteCommandTruncatesOutputTails(t *testing.T) {
	s := sshtest.New(t, 1)
	act := NewSSH(sshtest.Pool(t, remote.PoolOptions{}, nil))

	// 100 000 bytes of 2-byte characters on stdout, 10 000 on stderr, then a known end.
	res, err := act.RunRemoteCommand(context.Background(), CommandRequest{
		Host: s.Host(0),
		Command: []string{"sh", "-c", `i=0; while [ $i -lt 50000 ]; do printf 'é'; i=$((i+1)); done; echo; echo THE-END
head -c 10000 /dev/zero | tr '\0' x >&2; echo ERR-END >&2`},
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"stdout": res.Stdout, "stderr": res.Stderr} {
		if len(out) > remote.TailMax {
			t.Errorf("%s is %d bytes, more than %d", name, len(out), remote.TailMax)
		}
		if !utf8.ValidString(out) {
			t.Errorf("%s is not valid UTF-8", name)
		}
		if !strings.HasPrefix(out, "[clusterflow: ") || !strings.Contains(out, "earlier bytes not kept]\n") {
			t.Errorf("%s has no truncation marker: %.80q", name, out)
		}
	}
	if !strings.HasSuffix(res.Stdout, "éé\nTHE-END\n") || strings.ContainsRune(res.Stdout, utf8.RuneError) {
		t.Errorf("stdout tail = %q", res.Stdout[len(res.Stdout)-40:])
	}
	if !strings.HasSuffix(res.Stderr, "xxERR-END\n") {
		t.Errorf("stderr tail = %q", res.Stderr[len(res.Stderr)-40:])
	}
}

func TestRunRemoteCommandQuotingEnvAndDir(t *testing.T) {
	s := sshtest.New(t, 1)
	act := NewSSH(sshtest.Pool(t, remote.PoolOptions{}, nil))

	// The "host" is this machine, so a local directory is a remote one too.
	dir := filepath.Join(t.TempDir(), `dir with 'quotes' "and" $x`)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	nasty := []string{
		"a b", "it's", `"double"`, "$HOME", "${PATH}", "`id`", "$(id)", "new\nline",
		`back\slash`, "", "*", "; rm -rf /tmp/nope", "tab\there", "-n", "'", "\\'",
	}
	res, err := act.RunRemoteCommand(context.Background(), CommandRequest{
		Host:    s.Host(0),
		Command: append([]string{"printf", "[%s]\n"}, nasty...),
	})
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, a := range nasty {
		want.WriteString("[" + a + "]\n")
	}
	if res.ExitCode != 0 || res.Stdout != want.String() {
		t.Fatalf("printf of nasty argv:\n got %q\nwant %q\nstderr %q", res.Stdout, want.String(), res.Stderr)
	}

	env := map[string]string{
		"B_NASTY": "x'y $HOME \"q\" `id`\nsecond line",
		"A_PLAIN": "1",
		"EMPTY":   "",
	}
	res, err = act.RunRemoteCommand(context.Background(), CommandRequest{
		Host:    s.Host(0),
		Command: []string{"sh", "-c", `pwd; printf '%s|%s|%s|' "$A_PLAIN" "$B_NASTY" "${EMPTY-unset}"`},
		Env:     env,
		Dir:     dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	wantOut := dir + "\n1|" + env["B_NASTY"] + "||"
	if res.ExitCode != 0 || res.Stdout != wantOut {
		t.Fatalf("env/dir:\n got %q\nwant %q\nstderr %q", res.Stdout, wantOut, res.Stderr)
	}

	// Bad env names are refused before anything runs.
	_, err = act.RunRemoteCommand(context.Background(), CommandRequest{
		Host: s.Host(0), Command: []string{"true"}, Env: map[string]string{"A=B": "x"},
	})
	requireAppErr(t, err, ErrInvalidInput, false)
	_, err = act.RunRemoteCommand(context.Background(), CommandRequest{Host: s.Host(0)})
	requireAppErr(t, err, ErrInvalidInput, false)
}

func TestRunRemoteCommandGuards(t *testing.T) {
	s := sshtest.New(t, 1)
	act := NewSSH(sshtest.Pool(t, remote.PoolOptions{}, nil))
	ctx := context.Background()
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	touch := []string{"sh", "-c", `echo run >> "$0"`, marker}

	exists := filepath.Join(dir, "exists")
	if err := os.WriteFile(exists, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name    string
		req     CommandRequest
		skipped bool
	}{
		{"creates exists", CommandRequest{Creates: exists}, true},
		{"creates relative to dir", CommandRequest{Creates: "exists", Dir: dir}, true},
		{"creates missing", CommandRequest{Creates: filepath.Join(dir, "missing")}, false},
		{"unless exits 0", CommandRequest{Unless: []string{"test", "-e", exists}}, true},
		{"unless exits 1", CommandRequest{Unless: []string{"test", "-e", filepath.Join(dir, "missing")}}, false},
		{"unless sees env", CommandRequest{Unless: []string{"sh", "-c", `[ "$GUARD" = yes ]`}, Env: map[string]string{"GUARD": "yes"}}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			os.Remove(marker)
			req := c.req
			req.Host = s.Host(0)
			req.Command = touch
			res, err := act.RunRemoteCommand(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			_, statErr := os.Stat(marker)
			ran := statErr == nil
			if res.Skipped != c.skipped || ran == c.skipped {
				t.Fatalf("skipped=%v ran=%v, want skipped=%v; result %+v", res.Skipped, ran, c.skipped, res)
			}
			if c.skipped && res.SkipReason == "" {
				t.Fatal("skipped without a reason")
			}
		})
	}
}

// TestRunRemoteCommandCancelKillsRemoteProcess cancels a running activity and checks
// that the remote processes (wrapper, shell and its child) are gone, including a
// child that ignores SIGTERM (it gets SIGKILL after the grace period).
func TestRunRemoteCommandCancelKillsRemoteProcess(t *testing.T) {
	s := sshtest.New(t, 1)
	act := NewSSH(sshtest.Pool(t, remote.PoolOptions{}, nil))

	for _, tc := range []struct{ name, script string }{
		{"plain", "sleep %s; echo never"},
		// An ignored signal stays ignored across exec: neither sh nor sleep dies of
		// TERM, so this needs the KILL that follows.
		{"ignores TERM", "trap '' TERM; sleep %s; echo never"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, cancel := activityEnv(t, act)
			marker := sshtest.SleepMarker()
			errc := make(chan error, 1)
			go func() {
				_, err := env.ExecuteActivity(act.RunRemoteCommand, CommandRequest{
					Host:    s.Host(0),
					Command: []string{"sh", "-c", strings.ReplaceAll(tc.script, "%s", marker)},
				})
				errc <- err
			}()
			sshtest.Eventually(t, "the remote command to start", 10*time.Second, func() bool { return sshtest.SleepRunning(marker) })
			cancel()
			select {
			case err := <-errc:
				var canceled *temporal.CanceledError
				if err == nil || (!errors.As(err, &canceled) && !strings.Contains(err.Error(), "context canceled")) {
					t.Fatalf("want a cancellation error, got %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("activity did not return after cancellation")
			}
			sshtest.Eventually(t, "the remote processes to end", 10*time.Second, func() bool { return len(sshtest.ProcsWith(marker)) == 0 })
		})
	}
}

// TestRunRemoteCommandHeartbeats checks that a running command heartbeats: the
// activity records the runner's progress (remote's TestRunProgress) as
// CommandProgress. (The SDK sends the first heartbeat at once and batches later
// ones, so it looks for one.)
func TestRunRemoteCommandHeartbeats(t *testing.T) {
	s := sshtest.New(t, 1)
	pool := sshtest.Pool(t, remote.PoolOptions{}, nil)
	dir := t.TempDir()
	act := NewSSH(pool)
	act.heartbeatEvery = 20 * time.Millisecond
	env, _ := activityEnv(t, act)
	got := make(chan CommandProgress, 100)
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var p CommandProgress
		if details.Get(&p) == nil {
			select {
			case got <- p:
			default:
			}
		}
	})
	stop2 := filepath.Join(dir, "stop2")
	first := make(chan CommandProgress, 1)
	go func() {
		select {
		case p := <-got:
			first <- p
		case <-time.After(15 * time.Second):
			first <- CommandProgress{}
		}
		_ = os.WriteFile(stop2, nil, 0o644)
	}()
	if _, err := env.ExecuteActivity(act.RunRemoteCommand, CommandRequest{
		Host:    s.Host(0),
		Command: []string{"sh", "-c", `while [ ! -e "$0" ]; do sleep 0.05; done`, stop2},
	}); err != nil {
		t.Fatal(err)
	}
	if p := <-first; p.Phase != "command" {
		t.Fatalf("no heartbeat from the activity (got %+v)", p)
	}
}
