// Package config loads clusterflow's settings for the worker and the starter from
// four layers with one precedence: command-line flags > environment > config file >
// defaults. Nothing here is global: every command builds its own Config.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.temporal.io/sdk/client"

	"github.com/clusterflow/clusterflow/internal/codec"
	"github.com/clusterflow/clusterflow/internal/httpguard"
	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// Config is everything a clusterflow process needs to know.
type Config struct {
	Temporal    Temporal
	StateDir    string // project state: embedded server's SQLite file, lab files
	PlaybookDir string // where the worker finds playbooks named by Web UI input
	// AllowPaths and AllowRead are the worker's file policy beyond its defaults
	// (FilePolicy): directories a playbook may read and write, and read only.
	AllowPaths, AllowRead []string
	// SecretFiles are the files of this configuration that hold secrets (the
	// config file, keys, passwords): the file policy denies them to playbooks.
	SecretFiles []string
	LogLevel    string // debug, info, warn, error
	LogFormat   string // text or json
	// MetricsAddress is where the worker serves Prometheus metrics (GET /metrics)
	// and GET /healthz; empty (or "off", e.g. CLUSTERFLOW_METRICS_ADDRESS=off, since
	// an empty variable counts as unset) turns the endpoint off. The starter ignores it.
	MetricsAddress string
	Codec          Codec
	File           string // the config file read, if any
}

// Codec is payload encryption (internal/codec). It is off, and payloads reach
// Temporal in clear, unless a keyring is configured.
type Codec struct {
	KeyFile string
	// Keys is the keyring read from KeyFile or CLUSTERFLOW_CODEC_KEYS; nil when the
	// codec is off. It prints key IDs only.
	Keys *codec.Keyring
	// Address is where the codec endpoint the Web UI decodes payloads through listens
	// (host:port): in the process that runs the embedded Web UI, and in `worker
	// codec-server`. Empty (or "off") turns it off.
	Address string
	// Origins are the Web UI origins (scheme://host:port) the endpoint serves;
	// empty means the embedded Web UI's (see CodecOrigins).
	Origins []string
}

// On reports whether payloads are encrypted.
func (c Codec) On() bool { return c.Keys != nil }

// Temporal says which Temporal cluster to use. An empty Address means: start the
// embedded server (or use the one already listening on the embedded port).
type Temporal struct {
	Address       string
	Namespace     string
	APIKey        string // value, read from TEMPORAL_API_KEY or APIKeyFile; never logged
	APIKeyFile    string
	TLSCert       string // client certificate file (mTLS)
	TLSKey        string
	TLSCA         string // CA bundle for the server's certificate
	TLSServerName string
	TLS           bool // TLS without a client certificate (e.g. with an API key)

	// Embedded server settings.
	BindIP    string
	GRPCPort  int
	UIPort    int
	Retention time.Duration
	// UIHosts are the host names, besides localhost, loopback addresses and BindIP,
	// that the Web UI (and the HTTP API) answer to: a request whose Host header names
	// anything else is refused, which keeps DNS rebinding pages out.
	UIHosts []string
	// HTTPPort is the frontend's HTTP API port; 0 (the default) leaves the API off.
	HTTPPort int
	// Postgres, when set, is the PostgreSQL database the embedded server keeps its
	// persistence and visibility in (and shares with any other server on it, forming
	// one cluster); nil means SQLite in the state directory.
	Postgres *Postgres
	// HistoryShards is the history shard count of a new database; it can never
	// change afterwards. 0 means the database's own count, or for a new database 1
	// on SQLite and DefaultPGShards on PostgreSQL.
	HistoryShards int
	// ClusterPorts is the first of ClusterPortCount consecutive ports the embedded
	// server's internal services (history, matching, worker) and their membership
	// listen on; 0 picks free ports at each start.
	ClusterPorts int
	// BroadcastAddress is the IP address other server processes of the cluster reach
	// this one's internal ports on; empty means BindIP, or when that is 0.0.0.0 this
	// machine's first non-loopback IPv4 address.
	BroadcastAddress string
}

// DefaultPGShards is the history shard count of a new PostgreSQL database: enough to
// spread history over a few dozen server processes, cheap enough for two (each shard
// polls its task queues: two idle servers used 0.046 cores with 64 and 0.098 with
// 512, Temporal's choice for large clusters; docs/BENCHMARKS.md, section 6).
const DefaultPGShards = 64

// ClusterPortCount is how many ports from ClusterPorts the embedded server takes:
// gRPC of history, matching and worker, then membership of frontend, history,
// matching and worker.
const ClusterPortCount = 7

// Embedded reports whether no Temporal address was configured.
func (t Temporal) Embedded() bool { return t.Address == "" }

// DBFile is the embedded server's SQLite file.
func (c Config) DBFile() string { return filepath.Join(c.StateDir, "temporal.db") }

// Database names where the embedded server keeps its state, for messages: the
// PostgreSQL URL (never with a password) or the SQLite file.
func (c Config) Database() string {
	if c.Temporal.Postgres != nil {
		return c.Temporal.Postgres.String()
	}
	return c.DBFile()
}

// setting is one configurable value: its key in the config file, its flag, and the
// environment variables that set it (first match wins).
type setting struct {
	key, flag, usage string
	def              any
	env              []string
}

var settings = []setting{
	{"temporal.address", "address", "Temporal frontend host:port; empty starts the embedded server", "", []string{"TEMPORAL_ADDRESS"}},
	{"temporal.namespace", "namespace", "Temporal namespace", "default", []string{"TEMPORAL_NAMESPACE"}},
	{"temporal.apiKeyFile", "api-key-file", "file holding a Temporal API key (or set TEMPORAL_API_KEY)", "", []string{"TEMPORAL_API_KEY_FILE"}},
	{"temporal.tls", "tls", "use TLS to reach Temporal (implied by the TLS file flags)", false, []string{"TEMPORAL_TLS"}},
	{"temporal.tlsCert", "tls-cert", "client certificate file for mTLS", "", []string{"TEMPORAL_TLS_CERT", "TEMPORAL_TLS_CLIENT_CERT_PATH"}},
	{"temporal.tlsKey", "tls-key", "client key file for mTLS", "", []string{"TEMPORAL_TLS_KEY", "TEMPORAL_TLS_CLIENT_KEY_PATH"}},
	{"temporal.tlsCA", "tls-ca", "CA certificate file for the Temporal server", "", []string{"TEMPORAL_TLS_CA", "TEMPORAL_TLS_SERVER_CA_CERT_PATH"}},
	{"temporal.tlsServerName", "tls-server-name", "server name to verify in Temporal's certificate", "", []string{"TEMPORAL_TLS_SERVER_NAME"}},
	{"embedded.bind", "bind", "address the embedded server and Web UI listen on", "127.0.0.1", []string{"CLUSTERFLOW_BIND"}},
	{"embedded.grpcPort", "grpc-port", "embedded server frontend port", 7233, []string{"CLUSTERFLOW_GRPC_PORT"}},
	{"embedded.uiPort", "ui-port", "embedded Web UI port (0 turns the UI off)", 8233, []string{"CLUSTERFLOW_UI_PORT"}},
	{"embedded.uiHosts", "ui-hosts", "comma-separated host names, besides localhost, loopback addresses and the bind address, that the Web UI (and HTTP API) answer to", "", []string{"CLUSTERFLOW_UI_HOSTS"}},
	{"embedded.httpPort", "http-port", "embedded server frontend HTTP API port (0 leaves the HTTP API off)", 0, []string{"CLUSTERFLOW_HTTP_PORT"}},
	{"embedded.db", "db", "embedded server database: empty for SQLite in the state directory, or postgres://USER@HOST:PORT/DATABASE (every server on one PostgreSQL database forms one cluster)", "", []string{"CLUSTERFLOW_DB"}},
	{"embedded.dbPasswordFile", "db-password-file", "file holding the PostgreSQL password (or set CLUSTERFLOW_DB_PASSWORD); never in the URL", "", []string{"CLUSTERFLOW_DB_PASSWORD_FILE"}},
	{"embedded.historyShards", "history-shards", "history shards of a new database, fixed once it exists (0: the database's own count; for a new one 1 on SQLite, 64 on PostgreSQL)", 0, []string{"CLUSTERFLOW_HISTORY_SHARDS"}},
	{"embedded.clusterPorts", "cluster-ports", "first of 7 consecutive ports for the embedded server's internal services and cluster membership (0: free ports)", 0, []string{"CLUSTERFLOW_CLUSTER_PORTS"}},
	{"embedded.broadcastAddress", "broadcast-address", "IP address the other servers of a PostgreSQL cluster reach this one on (default: the bind address, or the first non-loopback address when binding 0.0.0.0)", "", []string{"CLUSTERFLOW_BROADCAST_ADDRESS"}},
	{"embedded.retention", "retention", "how long the embedded server keeps closed runs", "720h", []string{"CLUSTERFLOW_RETENTION"}},
	{"stateDir", "state-dir", "project state directory", ".clusterflow", []string{"CLUSTERFLOW_STATE_DIR"}},
	{"playbookDir", "playbook-dir", "directory of playbooks that Web UI input may name", "playbooks", []string{"CLUSTERFLOW_PLAYBOOK_DIR"}},
	{"allowPaths", "allow-path", "comma-separated directories of the worker's machine, besides the state directory, that playbooks may read and write (keys, known_hosts, gossip key)", "", []string{"CLUSTERFLOW_ALLOW_PATHS"}},
	{"allowRead", "allow-read", "comma-separated directories of the worker's machine, besides the playbook directory, the state directory and ~/.ssh, that playbooks may read", "", []string{"CLUSTERFLOW_ALLOW_READ"}},
	{"log.level", "log-level", "log level: debug, info, warn, error", "info", []string{"CLUSTERFLOW_LOG_LEVEL"}},
	{"log.format", "log-format", "log format: text or json", "text", []string{"CLUSTERFLOW_LOG_FORMAT"}},
	{"codec.keyFile", "codec-key-file", "file of AES-256 keys that encrypt payloads (\"ID BASE64KEY\" a line, current first; or set CLUSTERFLOW_CODEC_KEYS); empty: payloads in clear", "", []string{"CLUSTERFLOW_CODEC_KEY_FILE"}},
	{"codec.address", "codec-address", "host:port of the codec endpoint the Web UI decodes payloads through, when the codec is on (empty or off turns it off)", "127.0.0.1:8234", []string{"CLUSTERFLOW_CODEC_ADDRESS"}},
	{"codec.origins", "codec-origins", "comma-separated Web UI origins the codec endpoint serves (default: the embedded Web UI's)", "", []string{"CLUSTERFLOW_CODEC_ORIGINS"}},
	{"metrics.address", "metrics-address", "worker: host:port serving Prometheus metrics on /metrics (empty or off turns it off)", "127.0.0.1:9464", []string{"CLUSTERFLOW_METRICS_ADDRESS"}},
}

// AddFlags declares every setting as a flag, plus --config.
func AddFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "config file (default ./clusterflow.yaml, then ~/.config/clusterflow/config.yaml; env CLUSTERFLOW_CONFIG)")
	for _, s := range settings {
		switch d := s.def.(type) {
		case string:
			fs.String(s.flag, d, s.usage)
		case int:
			fs.Int(s.flag, d, s.usage)
		case bool:
			fs.Bool(s.flag, d, s.usage)
		}
	}
}

// Load builds the Config from the flags that were set, the environment (as
// KEY=VALUE pairs, e.g. os.Environ()), the config file and the defaults.
func Load(fs *pflag.FlagSet, environ []string) (Config, error) {
	env := envMap(environ)
	v := viper.New()
	for _, s := range settings {
		v.SetDefault(s.key, s.def)
	}

	// Layer 2: the config file.
	file, explicit := "", false
	if f := fs.Lookup("config"); f != nil && f.Changed {
		file, explicit = f.Value.String(), true
	} else if e, ok := env["CLUSTERFLOW_CONFIG"]; ok && e != "" {
		file, explicit = e, true
	} else {
		file = defaultConfigFile(env)
	}
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			if explicit || !errors.Is(err, os.ErrNotExist) {
				return Config{}, fmt.Errorf("config file %s: %w", file, err)
			}
			file = ""
		}
	}
	// Layer 3: the environment. Layer 4: flags given on the command line.
	for _, s := range settings {
		for _, name := range s.env {
			if val, ok := env[name]; ok && val != "" {
				v.Set(s.key, val)
				break
			}
		}
		if f := fs.Lookup(s.flag); f != nil && f.Changed {
			v.Set(s.key, f.Value.String())
		}
	}

	c := Config{
		StateDir:       v.GetString("stateDir"),
		PlaybookDir:    v.GetString("playbookDir"),
		LogLevel:       v.GetString("log.level"),
		LogFormat:      v.GetString("log.format"),
		MetricsAddress: v.GetString("metrics.address"),
		Codec: Codec{
			KeyFile: v.GetString("codec.keyFile"),
			Address: v.GetString("codec.address"),
		},
		File: file,
		Temporal: Temporal{
			Address:       v.GetString("temporal.address"),
			Namespace:     v.GetString("temporal.namespace"),
			APIKeyFile:    v.GetString("temporal.apiKeyFile"),
			TLS:           v.GetBool("temporal.tls"),
			TLSCert:       v.GetString("temporal.tlsCert"),
			TLSKey:        v.GetString("temporal.tlsKey"),
			TLSCA:         v.GetString("temporal.tlsCA"),
			TLSServerName: v.GetString("temporal.tlsServerName"),
			BindIP:        v.GetString("embedded.bind"),
			GRPCPort:      v.GetInt("embedded.grpcPort"),
			UIPort:        v.GetInt("embedded.uiPort"),
			HTTPPort:      v.GetInt("embedded.httpPort"),

			HistoryShards:    v.GetInt("embedded.historyShards"),
			ClusterPorts:     v.GetInt("embedded.clusterPorts"),
			BroadcastAddress: v.GetString("embedded.broadcastAddress"),
		},
	}
	if c.MetricsAddress == "off" {
		c.MetricsAddress = ""
	}
	if c.Codec.Address == "off" {
		c.Codec.Address = ""
	}
	c.Temporal.UIHosts = list(v.Get("embedded.uiHosts"))
	c.AllowPaths = list(v.Get("allowPaths"))
	c.AllowRead = list(v.Get("allowRead"))
	for _, k := range []string{"temporal.apiKeyFile", "temporal.tlsKey", "embedded.dbPasswordFile", "codec.keyFile"} {
		if f := v.GetString(k); f != "" {
			c.SecretFiles = append(c.SecretFiles, f)
		}
	}
	for _, o := range list(v.Get("codec.origins")) {
		c.Codec.Origins = append(c.Codec.Origins, strings.TrimSuffix(o, "/"))
	}
	var err error
	if c.Temporal.Retention, err = time.ParseDuration(v.GetString("embedded.retention")); err != nil {
		return Config{}, fmt.Errorf("retention: %w", err)
	}
	if v.IsSet("temporal.apiKey") {
		return Config{}, errors.New("config file: temporal.apiKey is not read from files; put the key in a file of its own and set temporal.apiKeyFile, or set TEMPORAL_API_KEY")
	}
	if key, ok := env["TEMPORAL_API_KEY"]; ok {
		c.Temporal.APIKey = key
	}
	if c.Temporal.APIKeyFile != "" {
		b, err := os.ReadFile(c.Temporal.APIKeyFile)
		if err != nil {
			return Config{}, fmt.Errorf("temporal API key file: %w", err)
		}
		c.Temporal.APIKey = strings.TrimSpace(string(b))
	}
	if v.IsSet("embedded.dbPassword") {
		return Config{}, errors.New("config file: embedded.dbPassword is not read from config files; " + passwordAdvice)
	}
	if c.Temporal.Postgres, err = loadDB(v.GetString("embedded.db"), v.GetString("embedded.dbPasswordFile"), env); err != nil {
		return Config{}, err
	}
	if v.IsSet("codec.keys") {
		return Config{}, errors.New("config file: codec.keys is not read from config files; put the keys in a file of their own (chmod 600) and set codec.keyFile, or set CLUSTERFLOW_CODEC_KEYS")
	}
	keys, inEnv := env[codec.KeysEnv]
	switch {
	case inEnv && keys != "" && c.Codec.KeyFile != "":
		return Config{}, fmt.Errorf("both %s and a codec key file (%s) are set: use one", codec.KeysEnv, c.Codec.KeyFile)
	case inEnv && keys != "":
		if c.Codec.Keys, err = codec.ParseKeys(keys); err != nil {
			return Config{}, err
		}
	case c.Codec.KeyFile != "":
		if c.Codec.Keys, err = codec.LoadKeyFile(c.Codec.KeyFile); err != nil {
			return Config{}, err
		}
	}
	return c, c.check()
}

func (c Config) check() error {
	t := c.Temporal
	switch {
	case c.LogFormat != "text" && c.LogFormat != "json":
		return fmt.Errorf("log format %q: use text or json", c.LogFormat)
	case (t.TLSCert == "") != (t.TLSKey == ""):
		return errors.New("give both a TLS client certificate and key, or neither")
	case t.Embedded() && t.APIKey != "":
		return errors.New("an API key needs a Temporal address (--address or TEMPORAL_ADDRESS); the embedded server takes client certificates (--tls-cert, --tls-key, --tls-ca)")
	case t.Embedded() && (t.TLS || t.TLSCert != "" || t.TLSCA != "") && (t.TLSCert == "" || t.TLSCA == ""):
		return errors.New("the embedded server's mTLS needs --tls-cert and --tls-key (its certificate, which it also presents to other servers as a client) " +
			"and --tls-ca (the CA that signed every server's and client's certificate)")
	case !t.Embedded() && t.Postgres != nil:
		return errors.New("a database (--db, CLUSTERFLOW_DB, embedded.db) is the embedded server's, and with a Temporal address no server runs here: drop one of them")
	case t.GRPCPort < 1 || t.GRPCPort > 65535 || t.UIPort < 0 || t.UIPort > 65535 || t.HTTPPort < 0 || t.HTTPPort > 65535:
		return errors.New("embedded ports must be between 1 and 65535 (UI port 0 turns the UI off, HTTP port 0 the HTTP API)")
	case t.ClusterPorts < 0 || t.ClusterPorts > 32768-ClusterPortCount:
		return fmt.Errorf("cluster ports: %d: want the first of %d free ports, all below 32768 (Temporal keeps membership ports in a smallint column), or 0 for free ports",
			t.ClusterPorts, ClusterPortCount)
	case t.HistoryShards < 0:
		return fmt.Errorf("history shards: %d: want a positive count, or 0 for the database's own", t.HistoryShards)
	case t.Postgres == nil && (t.ClusterPorts != 0 || t.BroadcastAddress != ""):
		return errors.New("cluster ports and the broadcast address are for a cluster of servers on PostgreSQL (--db postgres://...); the SQLite server runs alone")
	case t.BroadcastAddress != "" && net.ParseIP(t.BroadcastAddress) == nil:
		return fmt.Errorf("broadcast address %q: want an IP address (the other servers dial it)", t.BroadcastAddress)
	case c.StateDir == "":
		return errors.New("state directory is empty")
	}
	if !t.Embedded() {
		if _, err := Frontends(t.Address); err != nil {
			return err
		}
	}
	if c.MetricsAddress != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddress); err != nil {
			return fmt.Errorf("metrics address %q: want host:port (or empty to turn metrics off): %w", c.MetricsAddress, err)
		}
	}
	if c.Codec.Address != "" {
		if _, _, err := net.SplitHostPort(c.Codec.Address); err != nil {
			return fmt.Errorf("codec address %q: want host:port (or empty to turn the endpoint off): %w", c.Codec.Address, err)
		}
	}
	for _, h := range t.UIHosts {
		if err := httpguard.CheckName(h); err != nil {
			return fmt.Errorf("ui hosts (--ui-hosts, CLUSTERFLOW_UI_HOSTS, embedded.uiHosts): %w", err)
		}
	}
	for _, o := range c.Codec.Origins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("codec origin %q: want scheme://host[:port], as the browser shows the Web UI's address", o)
		}
	}
	return nil
}

// CodecOrigins are the Web UI origins the codec endpoint serves: the configured
// ones, or else the embedded Web UI's on this machine, under each name it answers to
// (none when the UI is off).
func (c Config) CodecOrigins() []string {
	if len(c.Codec.Origins) > 0 || c.Temporal.UIPort == 0 {
		return c.Codec.Origins
	}
	port := strconv.Itoa(c.Temporal.UIPort)
	origins := []string{"http://127.0.0.1:" + port, "http://localhost:" + port}
	for _, name := range httpguard.NewHosts(c.Temporal.BindIP, c.Temporal.UIHosts).NonLoopback() {
		origins = append(origins, "http://"+net.JoinHostPort(name, port))
	}
	return origins
}

// ClientOptions returns the SDK options that reach the configured cluster (for the
// embedded server, hostPort is where it listens). hostPort may list several
// frontends, comma-separated: the client then uses every one that answers.
func (c Config) ClientOptions(hostPort string) (client.Options, error) {
	t := c.Temporal
	frontends, err := Frontends(hostPort)
	if err != nil {
		return client.Options{}, err
	}
	opts := client.Options{Namespace: t.Namespace}
	opts.HostPort, opts.ConnectionOptions.DialOptions = dialFrontends(frontends)
	if t.TLS || t.TLSCert != "" || t.TLSCA != "" || t.APIKey != "" {
		tc := &tls.Config{ServerName: t.TLSServerName, MinVersion: tls.VersionTLS12}
		if t.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(t.TLSCert, t.TLSKey)
			if err != nil {
				return opts, fmt.Errorf("temporal TLS client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		if t.TLSCA != "" {
			pool, err := LoadCA(t.TLSCA)
			if err != nil {
				return opts, fmt.Errorf("temporal TLS CA: %w", err)
			}
			tc.RootCAs = pool
		}
		opts.ConnectionOptions.TLS = tc
	}
	if t.APIKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(t.APIKey)
	}
	if c.Codec.On() {
		cdc := codec.New(c.Codec.Keys)
		opts.DataConverter, opts.FailureConverter = cdc.DataConverter(), cdc.FailureConverter()
	}
	return opts, nil
}

// LoadCA reads a PEM file of CA certificates.
func LoadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

// EmbeddedHostPort is where the embedded server's frontend listens.
func (c Config) EmbeddedHostPort() string {
	return c.Temporal.BindIP + ":" + strconv.Itoa(c.Temporal.GRPCPort)
}

func defaultConfigFile(env map[string]string) string {
	if _, err := os.Stat("clusterflow.yaml"); err == nil {
		return "clusterflow.yaml"
	}
	if home := env["HOME"]; home != "" {
		p := filepath.Join(home, ".config", "clusterflow", "config.yaml")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// list reads a setting that holds several values: a comma-separated string (flag,
// environment) or a YAML list (config file). Empty items are dropped.
func list(v any) []string {
	var items []string
	switch v := v.(type) {
	case []any:
		for _, item := range v {
			items = append(items, fmt.Sprint(item))
		}
	case []string:
		items = v
	case string:
		items = strings.Split(v, ",")
	}
	var out []string
	for _, item := range items {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// FilePolicy is the worker's file policy (internal/workerfs). Playbooks may read,
// and send to hosts, files under the playbook directory, the state directory,
// AllowRead and AllowPaths; read SSH identity and known_hosts files from those and
// ~/.ssh; make or replace files under the state directory, AllowPaths and
// ~/.config/clusterflow, and the inventory's defaults ~/.ssh/known_hosts and
// ~/.ssh/clusterflow_ed25519 (with its companions). The worker's own secrets
// (its SQLite database, the config file, codec keys, API key, TLS key, database
// password file) are denied everywhere. Nothing else of the worker's machine is
// reachable from a workflow input.
func (c Config) FilePolicy() (*workerfs.Policy, error) {
	pc := workerfs.Config{
		Content: append([]string{c.PlaybookDir}, c.AllowRead...),
		Write:   append([]string{c.StateDir}, c.AllowPaths...),
		Deny:    append([]string{c.DBFile()}, c.SecretFiles...),
	}
	if c.File != "" {
		pc.Deny = append(pc.Deny, c.File)
	}
	if home, err := os.UserHomeDir(); err == nil {
		ssh := filepath.Join(home, ".ssh")
		pc.SSH = []string{ssh}
		pc.Write = append(pc.Write, filepath.Join(home, ".config", "clusterflow"))
		key := filepath.Join(ssh, "clusterflow_ed25519")
		pc.WriteFiles = []string{filepath.Join(ssh, "known_hosts")}
		for _, suffix := range []string{"", ".pub", ".next", ".next.pub", ".old", ".old.pub"} {
			pc.WriteFiles = append(pc.WriteFiles, key+suffix)
		}
	}
	p, err := workerfs.New(pc)
	if err != nil {
		return nil, fmt.Errorf("file policy (--allow-path, --allow-read): %w", err)
	}
	return p, nil
}
