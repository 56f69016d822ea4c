package pgtest

import (
	"os"
	"strings"
	"testing"
)

// TestServer starts a server and logs in over TCP on loopback with the password
// from its file (and not with another).
func TestServer(t *testing.T) {
	s := New(t, Options{NoFsync: true})
	if out, err := s.SQL("postgres", "SELECT current_user"); err != nil || out != User {
		t.Fatalf("psql with the password: %v: %s\n%s", err, out, s.Log())
	}
	right := s.Password()
	if err := writePassword(s, "wrong"); err != nil {
		t.Fatal(err)
	}
	if out, err := s.SQL("postgres", "SELECT 1"); err == nil || !strings.Contains(out, "password authentication failed") {
		t.Fatalf("psql with a wrong password: %v: %s", err, out)
	}
	if err := writePassword(s, right); err != nil {
		t.Fatal(err)
	}
	if u := s.URL("temporal"); !strings.HasPrefix(u, "postgres://"+User+"@127.0.0.1:") || strings.Contains(u, right) {
		t.Errorf("URL %q", u)
	}
}

func writePassword(s *Server, pw string) error {
	return os.WriteFile(s.PasswordFile, []byte(pw+"\n"), 0o600)
}
