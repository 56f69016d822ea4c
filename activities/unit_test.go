package activities

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"go.temporal.io/sdk/testsuite"

	"github.com/clusterflow/clusterflow/playbooks"
)

// These tests need no SSH server.

func TestShellQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "a b", "it's", "''", `\'`, "$HOME `x` $(y)", "new\nline", "é ✓", "-x", "*?[a]"} {
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("shellQuote(%q) read back as %q (%v)", s, out, err)
		}
	}
}

func TestCommandLine(t *testing.T) {
	e := remoteExec{argv: []string{"echo", "a'b"}, env: map[string]string{"Z": "1", "A": "x y"}, dir: "/tmp", sudo: true}
	line, err := e.commandLine()
	if err != nil {
		t.Fatal(err)
	}
	// The inner command line, as the wrapper gets it in $1.
	wantInner := `cd '/tmp' && exec sudo -n -- env 'A=x y' 'Z=1' 'echo' 'a'\''b'`
	if !strings.HasSuffix(line, " clusterflow "+shellQuote(wantInner)) {
		t.Fatalf("command line ends %q\nwant inner %q", line[len(line)-80:], wantInner)
	}
	for _, bad := range []remoteExec{
		{},
		{argv: []string{"a\x00b"}},
		{argv: []string{"true"}, env: map[string]string{"1X": "v"}},
		{argv: []string{"true"}, env: map[string]string{"X": "a\x00"}},
	} {
		if _, err := bad.commandLine(); err == nil {
			t.Errorf("%+v: want an error", bad)
		}
	}
}

// TestWrapperLocally runs the wrapper script with /bin/sh on this machine: exit
// codes pass through and output is not polluted by job notices.
func TestWrapperLocally(t *testing.T) {
	for _, c := range []struct {
		inner string
		code  int
		out   string
	}{
		{"echo out; exit 7", 7, "out\n"},
		{"true", 0, ""},
		{"kill -9 $$", 137, ""},
	} {
		cmd := exec.Command("/bin/sh", "-c", wrapperScript, "clusterflow", c.inner)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		stdin, _ := cmd.StdinPipe() // kept open: closing it would cancel
		err := cmd.Run()
		stdin.Close()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code || stdout.String() != c.out || stderr.String() != "" {
			t.Errorf("%q: exit %d stdout %q stderr %q; want exit %d stdout %q", c.inner, code, stdout.String(), stderr.String(), c.code, c.out)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	small := newTailBuffer(16)
	small.Write([]byte("hello"))
	if got := small.String(); got != "hello" {
		t.Fatalf("small = %q", got)
	}

	b := newTailBuffer(64)
	for range 1000 {
		b.Write([]byte("ééé")) // 2-byte characters, written in pieces
	}
	b.Write([]byte("\xff end")) // invalid UTF-8 is replaced
	got := b.String()
	if len(got) > 64 || !utf8.ValidString(got) {
		t.Fatalf("len %d valid %v: %q", len(got), utf8.ValidString(got), got)
	}
	if !strings.HasPrefix(got, "[clusterflow: ") || !strings.HasSuffix(got, "é\uFFFD end") {
		t.Fatalf("tail = %q", got)
	}
	// One big write keeps the tail too.
	big := newTailBuffer(64)
	big.Write([]byte(strings.Repeat("x", 1000) + "TAIL"))
	if got := big.String(); !strings.HasSuffix(got, "xTAIL") || len(got) > 64 || !strings.Contains(got, "[clusterflow: 9") {
		t.Fatalf("big = %q", got)
	}
}

func TestLineTracker(t *testing.T) {
	var l lineTracker
	l.Write([]byte("first\nsec"))
	if got := l.String(); got != "sec" {
		t.Fatalf("partial line: %q", got)
	}
	l.Write([]byte("ond\n\n  \n"))
	if got := l.String(); got != "second" {
		t.Fatalf("last line: %q", got)
	}
	l.Write([]byte(strings.Repeat("y", 1000)))
	if got := l.String(); len(got) != lineTrackerMax {
		t.Fatalf("long line kept %d bytes", len(got))
	}
}

func TestValidateHost(t *testing.T) {
	good := playbooks.Host{Name: "h", Address: "127.0.0.1", Port: 22, User: "root", IdentityFile: "/k", KnownHostsFile: "/kh"}
	if err := validateHost(good, 0); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*playbooks.Host){
		"no address":       func(h *playbooks.Host) { h.Address = "" },
		"no user":          func(h *playbooks.Host) { h.User = "" },
		"no known_hosts":   func(h *playbooks.Host) { h.KnownHostsFile = "" },
		"relative kh":      func(h *playbooks.Host) { h.KnownHostsFile = "kh" },
		"bad policy":       func(h *playbooks.Host) { h.HostKeyPolicy = "yolo" },
		"bad port":         func(h *playbooks.Host) { h.Port = 70000 },
		"bad jump":         func(h *playbooks.Host) { h.Via = &playbooks.Host{Name: "j"} },
		"relative keyfile": func(h *playbooks.Host) { h.IdentityFile = "id" },
	} {
		t.Run(name, func(t *testing.T) {
			h := good
			mut(&h)
			requireAppErr(t, validateHost(h, 0), ErrInvalidInput, false)
		})
	}
	// No credentials is found at dial time, before any network use.
	h := good
	h.IdentityFile = ""
	_, err := NewSSH(testPool(t, PoolOptions{}, nil)).RunRemoteCommand(context.Background(), CommandRequest{Host: h, Command: []string{"true"}})
	requireAppErr(t, err, ErrInvalidInput, false)
}

func TestPoolKey(t *testing.T) {
	a := playbooks.Host{Address: "192.0.2.1", User: "root", IdentityFile: "/k", KnownHostsFile: "/kh"}
	b := a
	b.Port = 22 // same as the default
	if poolKey(a) != poolKey(b) {
		t.Error("port 0 and 22 should share a connection")
	}
	c := a
	c.IdentityFile = "/other"
	if poolKey(a) == poolKey(c) {
		t.Error("different identity files must not share a connection")
	}
	j := a
	j.Via = &playbooks.Host{Address: "192.0.2.9", User: "root", KnownHostsFile: "/kh"}
	if poolKey(a) == poolKey(j) {
		t.Error("a jump chain must be part of the key")
	}
	if got := redactKey(poolKey(j)); got != "root@192.0.2.1:22 via root@192.0.2.9:22" {
		t.Errorf("redactKey = %q", got)
	}
}

func TestRegister(t *testing.T) {
	dir := t.TempDir()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	Register(env, testPool(t, PoolOptions{}, nil), dir)

	// Registered by method name: LoadPlaybook is callable by its name.
	_, err := env.ExecuteActivity("LoadPlaybook", LoadPlaybookRequest{})
	if err == nil || !strings.Contains(err.Error(), "input names no playbook") {
		t.Fatalf("LoadPlaybook by name: %v", err)
	}
	// And the others exist under their names (an input error proves they ran).
	if _, err := env.ExecuteActivity("RunRemoteCommand", CommandRequest{}); err == nil || !strings.Contains(err.Error(), ErrInvalidInput) {
		t.Fatalf("RunRemoteCommand by name: %v", err)
	}
	_, err = env.ExecuteActivity("UploadFile", UploadRequest{Src: filepath.Join(dir, "x"), Dest: "/x"})
	if err == nil || !strings.Contains(err.Error(), ErrInvalidInput) {
		t.Fatalf("UploadFile by name: %v", err)
	}
}
