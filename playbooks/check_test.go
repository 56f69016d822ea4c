package playbooks

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"gopkg.in/yaml.v3"
)

// valueNode parses one YAML value, as it would appear after "key: ".
func valueNode(t *testing.T, text string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("v: "+text), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0].Content[1]
}

func TestMode(t *testing.T) {
	tests := []struct {
		text string
		want uint32 // when ok
		ok   bool
	}{
		{`"0644"`, 0o644, true},
		{`'0644'`, 0o644, true},
		{`"644"`, 0o644, true},
		{`"0o755"`, 0o755, true},
		{`"04755"`, 0o4755, true},
		{`"0"`, 0, false},      // no permissions at all: refused
		{`0644`, 0o644, true},  // YAML 1.1 octal: unambiguous
		{`0o644`, 0o644, true}, // YAML 1.2 octal
		{`0`, 0, false},
		{`644`, 0, false}, // octal or decimal? refused
		{`420`, 0, false},
		{`0x1a4`, 0, false},
		{`0800`, 0, false}, // YAML reads this as a float
		{`"0800"`, 0, false},
		{`"017777"`, 0, false}, // more than permission bits
		{`"u+rw"`, 0, false},
		{`u+rw`, 0, false},
		{`""`, 0, false},
		{`[0644]`, 0, false},
		{`~`, 0, false},
	}
	for _, tt := range tests {
		f := &file{name: "t", r: newReport()}
		got, ok := f.mode(valueNode(t, tt.text), "mode")
		if ok != tt.ok || ok && got != tt.want {
			t.Errorf("mode %s = %#o, %v; want %#o, %v (errors: %v)", tt.text, got, ok, tt.want, tt.ok, f.r.errs)
		}
		if ok != (len(f.r.errs) == 0) {
			t.Errorf("mode %s: ok = %v with errors %v", tt.text, ok, f.r.errs)
		}
	}
}

func TestAddress(t *testing.T) {
	good := []string{"192.168.56.101", "::1", "fd00::10", "fe80::1%eth0", "localhost", "node-1.lab.example", "node1.example.com.", "a"}
	for _, a := range good {
		if p := addressProblem(a); p != "" {
			t.Errorf("address %q: %s", a, p)
		}
	}
	bad := map[string]string{
		"":                                   "must not be empty",
		"ssh://192.0.2.1":                    "not a URL",
		"192.0.2.1:22":                       "looks like host:port",
		"[::1]:22":                           "looks like host:port",
		"master:2222":                        "looks like host:port",
		"[::1]":                              "without brackets",
		"192.0.2.300":                        "not a valid IPv4",
		"1.2.3":                              "not a valid IPv4",
		"fd00::zz":                           "not a valid IPv6",
		"root@192.0.2.1":                     "write the user under user",
		"my host":                            "without spaces",
		"-bad.example":                       "must be an IP address or DNS name",
		"under_score.example":                "must be an IP address or DNS name",
		strings.Repeat("a", 64) + ".example": "must be an IP address or DNS name",
	}
	for a, want := range bad {
		if p := addressProblem(a); !strings.Contains(p, want) {
			t.Errorf("address %q: got %q, want it to say %q", a, p, want)
		}
	}
}

func TestSuggest(t *testing.T) {
	fields := []string{"name", "address", "port", "identityFile", "knownHostsFile"}
	for got, want := range map[string]string{
		"adress": "address", "prot": "port", "identityfile": "identityFile", "nmae": "name",
		"knownhosts": "", "colour": "", strings.Repeat("x", 1000): "",
	} {
		if s := suggest(got, fields); s != want {
			t.Errorf("suggest(%.10q) = %q, want %q", got, s, want)
		}
	}
}

func TestLocalPath(t *testing.T) {
	home := fakeHome(t)
	f := &file{dir: "/srv/playbooks"}
	for in, want := range map[string]string{
		"~/.ssh/id":      filepath.Join(home, ".ssh/id"),
		"~":              home,
		"keys/id":        "/srv/playbooks/keys/id",
		"../lab/inv.yml": "/srv/lab/inv.yml",
		"/etc//x/../y":   "/etc/y",
	} {
		if got, err := f.localPath(in); err != nil || got != want {
			t.Errorf("localPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := f.localPath("~bob/x"); err == nil || !strings.Contains(err.Error(), "only ~/") {
		t.Errorf("~bob/x: got %v", err)
	}
}

// TestUploadSourceStaysInside checks that a symbolic link cannot lead an upload out of
// the playbook's directory, and that non-regular files are refused.
func TestUploadSourceStaysInside(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "pb")
	writeFile(t, filepath.Join(root, "secret"), "not for upload\n")
	writeFile(t, filepath.Join(dir, "files", "ok.txt"), "fine\n")
	if err := os.Symlink(filepath.Join(root, "secret"), filepath.Join(dir, "files", "link")); err != nil {
		t.Skip("no symlinks:", err)
	}
	if err := os.Symlink("ok.txt", filepath.Join(dir, "files", "inner-link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "files", "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string]string{
		"files/ok.txt":     "",
		"files/inner-link": "",
		"files/link":       `spec.steps[0].src: "files/link" is a symbolic link that leads out of the playbook's directory`,
		"files":            `spec.steps[0].src: cannot upload "files" (` + filepath.Join(dir, "files") + "): is a directory, not a file",
		"files/fifo":       `spec.steps[0].src: cannot upload "files/fifo" (` + filepath.Join(dir, "files", "fifo") + "): is not a regular file",
		"/etc/passwd":      `spec.steps[0].src: must be a path relative to the playbook's directory`,
	} {
		src := strings.Replace(validMinimal, "      kind: run\n      hosts: all\n      command: [uname, -a]\n",
			"      kind: upload\n      hosts: all\n      src: "+src+"\n      dest: /tmp/x\n", 1)
		_, err := Parse("inline", []byte(src), dir)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", src, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("got %v\nwant %s", err, want)
		}
	}
}

// TestIncludeNotRegular checks that an include of a FIFO is refused without blocking
// on it.
func TestIncludeNotRegular(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(validMinimal, "  inventory:\n", "  inventory:\n    include: [fifo, /dev/zero]\n", 1)
	_, err := Parse("inline", []byte(src), dir)
	if err == nil || !strings.Contains(err.Error(), `"fifo" (`+filepath.Join(dir, "fifo")+"): is not a regular file") ||
		!strings.Contains(err.Error(), `"/dev/zero" (/dev/zero): is not a regular file`) {
		t.Errorf("got %v", err)
	}
}

// TestHostKeyPolicyNeverOff checks that no spelling turns host key checking off.
func TestHostKeyPolicyNeverOff(t *testing.T) {
	for _, v := range []string{"insecure", "ignore", "none", "off", "no", "false", "skip"} {
		src := strings.Replace(validMinimal, "hostKeyPolicy: strict", "hostKeyPolicy: "+v, 1)
		_, err := Parse("inline", []byte(src), t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "clusterflow always checks host keys") {
			t.Errorf("hostKeyPolicy %s: got %v", v, err)
		}
	}
}
