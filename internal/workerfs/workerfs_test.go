package workerfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPolicy(t *testing.T) {
	root := t.TempDir()
	mk := func(rel string) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	read, state, outside := mk("playbooks"), mk("state"), mk("outside")
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("planted-secret-7f3a"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(read, "link-out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(state, "dir-out")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(read, "motd"), []byte("hi"), 0o600); err != nil {
		t.Fatal(err)
	}
	sshDir := mk("home/.ssh")
	db := filepath.Join(state, "temporal.db")
	p, err := New(Config{Content: []string{read}, Write: []string{state}, SSH: []string{sshDir},
		WriteFiles: []string{filepath.Join(sshDir, "known_hosts")}, Deny: []string{db}})
	if err != nil {
		t.Fatal(err)
	}
	// Classes: ~/.ssh is for the SSH client only, never content for a host; one
	// file of it is writable; the worker's database is denied everywhere.
	for _, c := range []struct {
		path  string
		class Class
		ok    bool
	}{
		{filepath.Join(sshDir, "id_ed25519"), SSH, true},
		{filepath.Join(sshDir, "id_ed25519"), Content, false},
		{filepath.Join(sshDir, "id_ed25519"), Write, false},
		{filepath.Join(sshDir, "known_hosts"), Write, true},
		{filepath.Join(sshDir, "authorized_keys"), Write, false},
		{filepath.Join(read, "motd"), SSH, true},
		{db, Content, false}, {db, SSH, false}, {db, Write, false},
		{db + "-wal", Content, false},
		{filepath.Join(state, "lab", "consul"), Content, true},
	} {
		if got := p.Check(c.path, c.class) == nil; got != c.ok {
			t.Errorf("Check(%q, %d) allowed=%v, want %v", c.path, c.class, got, c.ok)
		}
	}
	cases := []struct {
		path        string
		read, write bool
	}{
		{filepath.Join(read, "motd"), true, false},
		{filepath.Join(read, "missing"), true, false},
		{filepath.Join(state, "lab", "known_hosts"), true, true}, // need not exist yet
		{state, true, true},
		{secret, false, false},
		{filepath.Join(outside, "missing"), false, false},
		{filepath.Join(read, "link-out"), false, false},             // a link that leads out
		{filepath.Join(state, "dir-out", "secret"), false, false},   // through a linked directory
		{filepath.Join(state, "dir-out", "new-file"), false, false}, // not yet there, still out
		{filepath.Join(read, "..", "outside", "secret"), false, false},
		{"/etc/passwd", false, false},
		{"/root/.ssh/authorized_keys2", false, false},
		{"relative/path", false, false},
		{"", false, false},
		{read + "\x00/x", false, false},
		{read + "-sibling/x", false, false}, // a prefix of the name is not the directory
	}
	for _, c := range cases {
		if got := p.Read(c.path) == nil; got != c.read {
			t.Errorf("Read(%q) allowed=%v, want %v", c.path, got, c.read)
		}
		if got := p.Write(c.path) == nil; got != c.write {
			t.Errorf("Write(%q) allowed=%v, want %v", c.path, got, c.write)
		}
	}

	// A refusal reads the same whether the file exists or not, and is a Refused.
	a, b := p.Read(secret), p.Read(filepath.Join(outside, "nothing-here"))
	if !IsRefused(a) || !IsRefused(b) {
		t.Fatalf("not Refused: %v / %v", a, b)
	}
	if strings.Replace(a.Error(), "secret", "nothing-here", 1) != b.Error() {
		t.Errorf("refusals differ beyond the path:\n%s\n%s", a, b)
	}
	if strings.Contains(a.Error(), "planted-secret") {
		t.Errorf("refusal quotes content: %s", a)
	}
	if !strings.Contains(a.Error(), "--allow-read or --allow-path") || !strings.Contains(p.Write(secret).Error(), "--allow-path") {
		t.Errorf("refusals do not say how to allow: %s", a)
	}

	if _, err := New(Config{Content: []string{"/"}}); err == nil {
		t.Error(`"/" accepted as an allowed directory`)
	}
	var none *Policy
	if none.Read(filepath.Join(read, "motd")) == nil {
		t.Error("a nil policy allowed a path")
	}
	if Unrestricted().Write("/etc/passwd") != nil {
		t.Error("Unrestricted refused a path")
	}
}
