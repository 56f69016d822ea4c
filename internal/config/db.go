package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Postgres is a PostgreSQL database for the embedded server, from a URL such as
// postgres://clusterflow@db.internal:5432/temporal?sslmode=verify-full. Its password
// never comes from the URL: it is read from a file (--db-password-file) or from
// CLUSTERFLOW_DB_PASSWORD, so that it stays out of process lists, shell histories and
// config files, and String never shows it.
type Postgres struct {
	Addr     string // host:port
	User     string
	Password string // empty: no password (trust, peer or certificate authentication)
	// Database holds the server's persistence; VisibilityDatabase (default
	// Database + "_visibility") its visibility records, the list the Web UI and
	// `starter list` filter by search attributes.
	Database, VisibilityDatabase string
	// Params are the libpq connection parameters given in the URL (sslmode and the
	// like), passed on to the driver.
	Params map[string]string
	// MaxConns caps each of the server's connection pools (one per service and
	// database: a server process opens up to 8*MaxConns connections at peak).
	MaxConns int
}

// defaultPGMaxConns is MaxConns unless the URL sets max_conns: two server processes
// then stay under PostgreSQL's default max_connections (100) at 2*8*5 = 80.
const defaultPGMaxConns = 5

// pgParams are the URL parameters passed on to the driver: the TLS settings and two
// harmless ones. Anything else is refused rather than passed on unchecked or ignored.
var pgParams = []string{"sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name"}

// dbName is what a database name may be: the server's tooling puts it into CREATE
// DATABASE as it is.
var dbName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// String is the database's URL without any password.
func (p *Postgres) String() string {
	u := url.URL{Scheme: "postgres", User: url.User(p.User), Host: p.Addr, Path: "/" + p.Database}
	if p.User == "" {
		u.User = nil
	}
	q := url.Values{}
	for k, v := range p.Params {
		q.Set(k, v)
	}
	if p.VisibilityDatabase != p.Database+"_visibility" {
		q.Set("visibility_database", p.VisibilityDatabase)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// passwordAdvice says where a database password goes instead of the URL.
const passwordAdvice = "put the password in a file of its own (chmod 600) and give it with --db-password-file " +
	"(CLUSTERFLOW_DB_PASSWORD_FILE, embedded.dbPasswordFile), or set CLUSTERFLOW_DB_PASSWORD"

// ParsePostgres reads a postgres:// (or postgresql://) URL. Errors name the part that
// is wrong and never repeat a password.
func ParsePostgres(raw string) (*Postgres, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url's errors quote the whole URL, which may hold a password.
		return nil, errors.New("database URL: not a URL; want postgres://USER@HOST:PORT/DATABASE")
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, fmt.Errorf("database URL: scheme %q: want postgres:// (empty --db keeps SQLite in the state directory)", u.Scheme)
	}
	if _, has := u.User.Password(); has {
		return nil, errors.New("database URL: it holds a password, which would show in process lists and config files; " + passwordAdvice)
	}
	p := &Postgres{User: u.User.Username(), Database: strings.TrimPrefix(u.Path, "/"), Params: map[string]string{}, MaxConns: defaultPGMaxConns}
	host, port := u.Hostname(), u.Port()
	switch {
	case host == "":
		return nil, errors.New("database URL: no host; want postgres://USER@HOST:PORT/DATABASE")
	case port == "":
		port = "5432"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("database URL: port %q is not a port number", port)
	}
	p.Addr = net.JoinHostPort(host, port)
	if p.User == "" {
		return nil, errors.New("database URL: no user; want postgres://USER@HOST:PORT/DATABASE")
	}
	if !dbName.MatchString(p.Database) {
		return nil, fmt.Errorf("database URL: database name %q: want one name of letters, digits and _ after the host, as in postgres://USER@HOST:PORT/temporal", p.Database)
	}
	p.VisibilityDatabase = p.Database + "_visibility"
	for key, vals := range u.Query() {
		if len(vals) != 1 {
			return nil, fmt.Errorf("database URL: parameter %s is given %d times", key, len(vals))
		}
		v := vals[0]
		switch {
		case key == "password":
			return nil, errors.New("database URL: it holds a password parameter; " + passwordAdvice)
		case key == "visibility_database":
			if !dbName.MatchString(v) || v == p.Database {
				return nil, fmt.Errorf("database URL: visibility_database %q: want a database of its own (letters, digits and _), not the persistence database", v)
			}
			p.VisibilityDatabase = v
		case key == "max_conns":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("database URL: max_conns %q: want a number of connections, at least 1", v)
			}
			p.MaxConns = n
		case slices.Contains(pgParams, key):
			p.Params[key] = v
		default:
			return nil, fmt.Errorf("database URL: unknown parameter %q: use %s, visibility_database or max_conns", key, strings.Join(pgParams, ", "))
		}
	}
	return p, nil
}

// loadDB reads the embedded server's database settings: the URL and, for PostgreSQL,
// the password from its file or the environment.
func loadDB(raw, passwordFile string, env map[string]string) (*Postgres, error) {
	envPassword, inEnv := env["CLUSTERFLOW_DB_PASSWORD"]
	if raw == "" || raw == "sqlite" {
		if passwordFile != "" || (inEnv && envPassword != "") {
			return nil, errors.New("a database password is set but the database is SQLite: set --db postgres://... or drop the password")
		}
		return nil, nil
	}
	p, err := ParsePostgres(raw)
	if err != nil {
		return nil, err
	}
	switch {
	case passwordFile != "" && inEnv && envPassword != "":
		return nil, fmt.Errorf("both CLUSTERFLOW_DB_PASSWORD and a database password file (%s) are set: use one", passwordFile)
	case passwordFile != "":
		b, err := os.ReadFile(passwordFile)
		if err != nil {
			return nil, fmt.Errorf("database password file: %w", err)
		}
		p.Password = strings.TrimRight(string(b), "\r\n")
		if p.Password == "" {
			return nil, fmt.Errorf("database password file %s is empty", passwordFile)
		}
	case inEnv:
		p.Password = envPassword
	}
	return p, nil
}
