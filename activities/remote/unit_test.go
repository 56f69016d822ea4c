package remote

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"unicode/utf8"
)

// These tests need no SSH server.

func TestShellQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "a b", "it's", "''", `\'`, "$HOME `x` $(y)", "new\nline", "é ✓", "-x", "*?[a]"} {
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+Quote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("Quote(%q) read back as %q (%v)", s, out, err)
		}
	}
}

func TestCommandLine(t *testing.T) {
	e := Cmd{Argv: []string{"echo", "a'b"}, Env: map[string]string{"Z": "1", "A": "x y"}, Dir: "/tmp", Sudo: true}
	line, err := e.commandLine()
	if err != nil {
		t.Fatal(err)
	}
	// The inner command line, as the wrapper gets it in $1.
	wantInner := `cd '/tmp' && exec sudo -n -- env 'A=x y' 'Z=1' 'echo' 'a'\''b'`
	if !strings.HasSuffix(line, " clusterflow "+Quote(wantInner)) {
		t.Fatalf("command line ends %q\nwant inner %q", line[len(line)-80:], wantInner)
	}
	for _, bad := range []Cmd{
		{},
		{Argv: []string{"a\x00b"}},
		{Argv: []string{"true"}, Env: map[string]string{"1X": "v"}},
		{Argv: []string{"true"}, Env: map[string]string{"X": "a\x00"}},
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
	good := Host{Name: "h", Address: "127.0.0.1", Port: 22, User: "root", IdentityFile: "/k", KnownHostsFile: "/kh"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Host){
		"no address":       func(h *Host) { h.Address = "" },
		"no user":          func(h *Host) { h.User = "" },
		"no known_hosts":   func(h *Host) { h.KnownHostsFile = "" },
		"relative kh":      func(h *Host) { h.KnownHostsFile = "kh" },
		"bad policy":       func(h *Host) { h.HostKeyPolicy = "yolo" },
		"bad port":         func(h *Host) { h.Port = 70000 },
		"bad jump":         func(h *Host) { h.Via = &Host{Name: "j"} },
		"relative keyfile": func(h *Host) { h.IdentityFile = "id" },
	} {
		t.Run(name, func(t *testing.T) {
			h := good
			mut(&h)
			requireKind(t, h.Validate(), Invalid)
		})
	}
	// No credentials is found at dial time, before any network use.
	h := good
	h.IdentityFile = ""
	p := NewPool(PoolOptions{})
	defer p.Close()
	_, err := p.Run(context.Background(), h, Cmd{Argv: []string{"true"}})
	requireKind(t, err, Invalid)
}

func TestPoolKey(t *testing.T) {
	a := Host{Address: "192.0.2.1", User: "root", IdentityFile: "/k", KnownHostsFile: "/kh"}
	b := a
	b.Port = 22 // same as the default
	if a.poolKey() != b.poolKey() {
		t.Error("port 0 and 22 should share a connection")
	}
	c := a
	c.IdentityFile = "/other"
	if a.poolKey() == c.poolKey() {
		t.Error("different identity files must not share a connection")
	}
	j := a
	j.Via = &Host{Address: "192.0.2.9", User: "root", KnownHostsFile: "/kh"}
	if a.poolKey() == j.poolKey() {
		t.Error("a jump chain must be part of the key")
	}
	if got := redactKey(j.poolKey()); got != "root@192.0.2.1:22 via root@192.0.2.9:22" {
		t.Errorf("redactKey = %q", got)
	}
}

func TestCapBuffer(t *testing.T) {
	c := &capBuffer{limit: 5}
	c.Write([]byte("abc"))
	c.Write([]byte("defg"))
	if c.buf.String() != "abcde" || !c.over {
		t.Fatalf("capBuffer kept %q, over=%v", c.buf.String(), c.over)
	}
}

func TestScriptBody(t *testing.T) {
	in := "#!/bin/sh\n# what it does\n#\n# more\n\nset -eu\n# a comment in the body stays\necho hi\n"
	if got, want := ScriptBody(in), "set -eu\n# a comment in the body stays\necho hi"; got != want {
		t.Fatalf("ScriptBody = %q, want %q", got, want)
	}
	if strings.Contains(wrapperScript, "wrapper.sh") || !strings.HasPrefix(wrapperScript, "exec 3<&0") {
		t.Fatalf("the wrapper's header is sent: %q", wrapperScript[:40])
	}
}

// requireKind checks that err is an *Error of kind k.
func requireKind(t *testing.T, err error, k Kind) *Error {
	t.Helper()
	var re *Error
	if !errors.As(err, &re) || re.Kind != k {
		t.Fatalf("want a %s error, got %T: %v", k, err, err)
	}
	return re
}

func TestKeyFormats(t *testing.T) {
	priv, pub, err := NewKeyPair("comment")
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePrivateKey(priv)
	if err != nil || !back.Equal(pub) || back.Fingerprint() != pub.Fingerprint() || back.Type() != "ssh-ed25519" {
		t.Fatalf("private key read back as %v (%v)", back.Describe(), err)
	}
	line := pub.AuthorizedLine("a comment")
	k, comment, options, err := ParseAuthorizedKey(`no-pty ` + line)
	if err != nil || !k.Equal(pub) || comment != "a comment" || len(options) != 1 || k.ID() != pub.ID() {
		t.Fatalf("%q read back as %v %q %q (%v)", line, k.Describe(), comment, options, err)
	}
	kh := KnownHostsLine([]string{KnownHostsName("192.0.2.1:2222")}, pub)
	marker, patterns, k2, err := ParseKnownHostsLine(kh)
	if err != nil || marker != "" || len(patterns) != 1 || patterns[0] != "[192.0.2.1]:2222" || !k2.Equal(pub) {
		t.Fatalf("%q read back as %q %q %v (%v)", kh, marker, patterns, k2.Describe(), err)
	}
	if _, err := ParsePrivateKey([]byte("not a key")); err == nil || errors.Is(err, ErrPassphrase) {
		t.Fatalf("garbage: %v", err)
	}
	var zero PublicKey
	if !zero.IsZero() || zero.Equal(pub) {
		t.Fatal("the zero key is no key")
	}
}

// TestLiteralHostPattern: a TOFU pin names one host, never a pattern.
func TestLiteralHostPattern(t *testing.T) {
	for p, want := range map[string]bool{
		"127.0.0.2": true, "[127.0.0.2]:2222": true, "node-1.lab": true, "::1": true, "[::1]:22": true,
		"*": false, "127.0.0.*": false, "!127.0.0.2": false, "a,b": false, "a b": false, "a\nb": false,
		"[127.0.0.2]:": false, "[127.0.0.2]:x": false, "|1|salt|hash": false, "@cert-authority": false, "": false,
	} {
		if got := literalHostPattern(p); got != want {
			t.Errorf("literalHostPattern(%q) = %v, want %v", p, got, want)
		}
	}
	for _, addr := range []string{"*", "127.0.0.2\nx", "a,b", "fe80::1%eth0", "-oProxyCommand=x"} {
		h := Host{Address: addr, User: "root", KnownHostsFile: "/k"}
		if err := h.Validate(); err == nil {
			t.Errorf("Validate accepted address %q", addr)
		}
	}
	if err := (Host{Address: "127.0.0.2", User: "root", KnownHostsFile: "/k/../x"}).Validate(); err == nil {
		t.Error("Validate accepted an unclean knownHostsFile")
	}
}
