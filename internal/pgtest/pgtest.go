// Package pgtest runs a throwaway PostgreSQL server from Debian's postgresql package
// (initdb and postgres from /usr/lib/postgresql/15/bin), for tests and benchmarks
// that need a real database for the embedded Temporal server's cluster mode.
//
// The server has a data directory of its own in a temporary directory, listens on a
// free port on 127.0.0.1 only (no Unix socket), and asks for a password
// (scram-sha-256) that is written to a file, so that clients exercise the
// password-by-reference path. PostgreSQL refuses to run as root: when the caller is
// root, initdb and postgres run as the unprivileged "postgres" account the package
// creates. The server is a child of the calling process and is stopped with it.
package pgtest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BinDir holds Debian's PostgreSQL 15 programs.
const BinDir = "/usr/lib/postgresql/15/bin"

// RequireEnv, when set, turns a missing PostgreSQL into a test failure rather than
// a skip (CI sets it, so that a broken setup is not mistaken for a pass).
const RequireEnv = "CLUSTERFLOW_REQUIRE_POSTGRES"

// User is the database superuser initdb creates (a superuser, so the embedded
// server may create its databases).
const User = "clusterflow"

// Options tune the server.
type Options struct {
	// MaxConnections is PostgreSQL's max_connections (default 300: a few server
	// processes at their connection-pool caps, and the tests' own).
	MaxConnections int
	// NoFsync turns fsync off: faster, and fine for a database that is thrown away,
	// but then nothing is durable; benchmarks keep it on.
	NoFsync bool
}

// Server is a running PostgreSQL server.
type Server struct {
	Dir          string // everything: data directory, log, password files
	Port         int
	PasswordFile string // the password of User, readable by the caller only
	cmd          *exec.Cmd
	exited       chan error
}

// Available reports why PostgreSQL cannot run here, or nil.
func Available() error {
	if _, err := exec.LookPath("psql"); err != nil {
		return errors.New("pgtest: psql not found: apt-get install postgresql (it brings postgresql-client)")
	}
	for _, p := range []string{"initdb", "postgres", "pg_isready"} {
		if _, err := os.Stat(filepath.Join(BinDir, p)); err != nil {
			return fmt.Errorf("pgtest: %s not found in %s: apt-get install postgresql (Debian's PostgreSQL 15)", p, BinDir)
		}
	}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			return errors.New("pgtest: running as root and there is no postgres account to run PostgreSQL as (Debian's postgresql package creates it)")
		}
	}
	return nil
}

// New starts a server for a test and stops it when the test ends. Without
// PostgreSQL the test is skipped, or fails when RequireEnv is set.
func New(t testing.TB, o Options) *Server {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Start starts a server in a new temporary directory.
func Start(o Options) (*Server, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = 300
	}
	dir, err := os.MkdirTemp("", "clusterflow-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, PasswordFile: filepath.Join(dir, "password")}
	if err := s.init(o); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// URL is a postgres:// URL for database db as User, without the password (which
// is in PasswordFile).
func (s *Server) URL(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(User), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), Path: "/" + db}
	return u.String()
}

// Password returns User's password (for tests that check it never shows).
func (s *Server) Password() string {
	b, _ := os.ReadFile(s.PasswordFile)
	return strings.TrimSpace(string(b))
}

// SQL runs statements in database db as User with Debian's psql and returns its
// unaligned output.
func (s *Server) SQL(db, statements string) (string, error) {
	cmd := exec.Command("psql", "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-U", User, "-d", db, "-v", "ON_ERROR_STOP=1", "-Atc", statements)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+s.Password(), "PGCONNECT_TIMEOUT=10")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("psql: %w: %s", err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// Pid is the postmaster's process ID (its backends are its children).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Log is the server's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "postgres.log"))
	return string(b)
}

// Stop shuts the server down (fast shutdown: open sessions are ended) and removes
// its directory.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	os.RemoveAll(s.Dir)
}

func (s *Server) data() string { return filepath.Join(s.Dir, "data") }

// init creates the data directory with initdb, owned by the account PostgreSQL runs as.
func (s *Server) init(o Options) error {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	password := hex.EncodeToString(secret)
	if err := os.WriteFile(s.PasswordFile, []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	// initdb reads the password from a file of its own, readable by its account,
	// removed once it has run.
	pwfile := filepath.Join(s.Dir, "initdb-password")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if err := os.Mkdir(s.data(), 0o700); err != nil {
		return err
	}
	if err := s.own(pwfile, s.data()); err != nil {
		return err
	}
	out, err := s.command(filepath.Join(BinDir, "initdb"), "-D", s.data(), "-U", User, "--pwfile", pwfile,
		"--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgtest: initdb: %w: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	s.Port = port
	fsync := "on"
	if o.NoFsync {
		fsync = "off"
	}
	conf := fmt.Sprintf("\n# pgtest\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = ''\nmax_connections = %d\nfsync = %s\n"+
		"shared_buffers = 128MB\nlog_min_messages = warning\n", port, o.MaxConnections, fsync)
	f, err := os.OpenFile(filepath.Join(s.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(conf)
	return errors.Join(err, f.Close())
}

// start runs postgres in the foreground as a child process and waits until it
// accepts connections.
func (s *Server) start() error {
	logf, err := os.OpenFile(filepath.Join(s.Dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := s.command(filepath.Join(BinDir, "postgres"), "-D", s.data())
	cmd.SysProcAttr.Pdeathsig = syscall.SIGINT // the caller's death stops it too
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("pgtest: starting postgres: %w", err)
	}
	s.cmd, s.exited = cmd, make(chan error, 1)
	go func() { s.exited <- cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := exec.Command(filepath.Join(BinDir, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port)).Run()
		if err == nil {
			return nil
		}
		select {
		case werr := <-s.exited:
			s.exited <- werr
			return fmt.Errorf("pgtest: postgres exited (%v): %s", werr, s.Log())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("pgtest: postgres did not accept connections within 60s: %s", s.Log())
		}
	}
}

// command runs a PostgreSQL program, as the postgres account when the caller is root.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if uid, gid, ok := runAs(); ok {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: gid}
		cmd.Dir = s.Dir
	}
	return cmd
}

// own hands paths to the account PostgreSQL runs as, and lets it through s.Dir.
func (s *Server) own(paths ...string) error {
	uid, gid, ok := runAs()
	if !ok {
		return nil
	}
	if err := os.Chmod(s.Dir, 0o711); err != nil {
		return err
	}
	for _, p := range paths {
		if err := os.Chown(p, int(uid), int(gid)); err != nil {
			return err
		}
	}
	return nil
}

// runAs is the postgres account when the caller is root.
func runAs() (uid, gid uint32, ok bool) {
	if os.Geteuid() != 0 {
		return 0, 0, false
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return 0, 0, false
	}
	a, _ := strconv.Atoi(u.Uid)
	b, _ := strconv.Atoi(u.Gid)
	return uint32(a), uint32(b), true
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
