package pgtest

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestServer starts a server and logs in with the password from its file, over TCP
// on loopback, with Debian's psql.
func TestServer(t *testing.T) {
	s := New(t, Options{NoFsync: true})
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql not installed (postgresql-client)")
	}
	run := func(password string) (string, error) {
		cmd := exec.Command(psql, "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-U", User, "-d", "postgres", "-Atc", "SELECT current_user")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+password, "PGCONNECT_TIMEOUT=10")
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := run(s.Password()); err != nil || out != User {
		t.Fatalf("psql with the password: %v: %s\n%s", err, out, s.Log())
	}
	if out, err := run("wrong"); err == nil || !strings.Contains(out, "password authentication failed") {
		t.Fatalf("psql with a wrong password: %v: %s", err, out)
	}
	if !strings.HasPrefix(s.URL("temporal"), "postgres://"+User+"@127.0.0.1:") || strings.Contains(s.URL("temporal"), s.Password()) {
		t.Errorf("URL %q", s.URL("temporal"))
	}
}
