package config

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func load(t *testing.T, args []string, env ...string) (Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return Load(fs, append([]string{"HOME=" + t.TempDir()}, env...))
}

func TestPrecedence(t *testing.T) {
	t.Chdir(t.TempDir()) // no ./clusterflow.yaml
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("temporal:\n  address: file:7233\n  namespace: from-file\nstateDir: /state/file\nembedded:\n  uiPort: 9000\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	c, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Temporal.Embedded() || c.Temporal.Namespace != "default" || c.Temporal.UIPort != 8233 || c.StateDir != ".clusterflow" {
		t.Fatalf("defaults: %+v", c)
	}

	c, err = load(t, []string{"--config", file})
	if err != nil {
		t.Fatal(err)
	}
	if c.Temporal.Address != "file:7233" || c.Temporal.Namespace != "from-file" || c.Temporal.UIPort != 9000 {
		t.Fatalf("file over defaults: %+v", c.Temporal)
	}

	c, err = load(t, []string{"--config", file}, "TEMPORAL_ADDRESS=env:7233", "CLUSTERFLOW_STATE_DIR=/state/env")
	if err != nil {
		t.Fatal(err)
	}
	if c.Temporal.Address != "env:7233" || c.StateDir != "/state/env" || c.Temporal.Namespace != "from-file" {
		t.Fatalf("env over file: %+v", c)
	}

	c, err = load(t, []string{"--config", file, "--address", "flag:7233"}, "TEMPORAL_ADDRESS=env:7233", "CLUSTERFLOW_CONFIG=/nonexistent")
	if err != nil {
		t.Fatal(err)
	}
	if c.Temporal.Address != "flag:7233" {
		t.Fatalf("flag over env: %+v", c.Temporal)
	}
}

func TestErrors(t *testing.T) {
	t.Chdir(t.TempDir())
	if _, err := load(t, nil, "CLUSTERFLOW_CONFIG=/nonexistent/c.yaml"); err == nil || !strings.Contains(err.Error(), "/nonexistent/c.yaml") {
		t.Fatalf("missing explicit config file: %v", err)
	}
	if _, err := load(t, []string{"--tls-cert", "c.pem"}, "TEMPORAL_ADDRESS=x:1"); err == nil {
		t.Fatal("a certificate without a key must be refused")
	}
	if _, err := load(t, nil, "TEMPORAL_API_KEY=secret"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("an API key without an address must be refused without echoing it: %v", err)
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	_ = os.WriteFile(file, []byte("temporal:\n  apiKey: abc\n"), 0o600)
	if _, err := load(t, []string{"--config", file}); err == nil || !strings.Contains(err.Error(), "apiKeyFile") {
		t.Fatalf("an API key in the config file must be refused: %v", err)
	}
}

func TestAPIKeyFromEnvAndFile(t *testing.T) {
	t.Chdir(t.TempDir())
	c, err := load(t, nil, "TEMPORAL_ADDRESS=x:7233", "TEMPORAL_API_KEY=k1")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := c.ClientOptions(c.Temporal.Address)
	if err != nil || opts.Credentials == nil || opts.ConnectionOptions.TLS == nil {
		t.Fatalf("API key implies TLS and credentials: %v %+v", err, opts)
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	_ = os.WriteFile(keyFile, []byte("k2\n"), 0o600)
	c, err = load(t, []string{"--api-key-file", keyFile}, "TEMPORAL_ADDRESS=x:7233")
	if err != nil || c.Temporal.APIKey != "k2" {
		t.Fatalf("key file: %v %q", err, c.Temporal.APIKey)
	}
}

func TestMetricsAddress(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{nil, nil, "127.0.0.1:9464"},
		{nil, []string{"CLUSTERFLOW_METRICS_ADDRESS=0.0.0.0:9100"}, "0.0.0.0:9100"},
		{[]string{"--metrics-address", "127.0.0.1:0"}, []string{"CLUSTERFLOW_METRICS_ADDRESS=0.0.0.0:9100"}, "127.0.0.1:0"},
		{[]string{"--metrics-address="}, nil, ""},
		{nil, []string{"CLUSTERFLOW_METRICS_ADDRESS=off"}, ""},
	} {
		c, err := load(t, tc.args, tc.env...)
		if err != nil {
			t.Fatalf("%v %v: %v", tc.args, tc.env, err)
		}
		if c.MetricsAddress != tc.want {
			t.Errorf("%v %v: metrics address %q, want %q", tc.args, tc.env, c.MetricsAddress, tc.want)
		}
	}
	if _, err := load(t, []string{"--metrics-address", "9464"}); err == nil || !strings.Contains(err.Error(), "metrics address") {
		t.Fatalf("a port without a host must be refused: %v", err)
	}
}

func TestCodec(t *testing.T) {
	t.Chdir(t.TempDir())
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	c, err := load(t, nil)
	if err != nil || c.Codec.On() {
		t.Fatalf("the codec is off by default: %v %v", err, c.Codec.Keys)
	}
	opts, _ := c.ClientOptions("x:7233")
	if opts.DataConverter != nil {
		t.Fatal("a data converter with the codec off")
	}
	if got := strings.Join(c.CodecOrigins(), " "); got != "http://127.0.0.1:8233 http://localhost:8233" || c.Codec.Address != "127.0.0.1:8234" {
		t.Fatalf("default origins %q, address %q", got, c.Codec.Address)
	}

	c, err = load(t, nil, "CLUSTERFLOW_CODEC_KEYS=k2 "+key+",k1 "+key)
	if err != nil || !c.Codec.On() || c.Codec.Keys.Current() != "k2" {
		t.Fatalf("keys from the environment: %v %v", err, c.Codec.Keys)
	}
	opts, _ = c.ClientOptions("x:7233")
	if opts.DataConverter == nil || opts.FailureConverter == nil {
		t.Fatal("the codec is on but the client options lack it")
	}

	file := filepath.Join(t.TempDir(), "keys")
	_ = os.WriteFile(file, []byte("f1 "+key+"\n"), 0o600)
	c, err = load(t, []string{"--codec-key-file", file, "--codec-address", "off", "--codec-origins", "https://ui.example/, http://127.0.0.1:8080"})
	if err != nil || c.Codec.Keys.Current() != "f1" || c.Codec.Address != "" {
		t.Fatalf("key file: %v %+v", err, c.Codec)
	}
	if got := strings.Join(c.CodecOrigins(), " "); got != "https://ui.example http://127.0.0.1:8080" {
		t.Fatalf("origins %q", got)
	}

	if _, err := load(t, []string{"--codec-key-file", file}, "CLUSTERFLOW_CODEC_KEYS=k1 "+key); err == nil || !strings.Contains(err.Error(), "use one") {
		t.Fatalf("a key file and keys in the environment: %v", err)
	}
	_ = os.Chmod(file, 0o644)
	if _, err := load(t, nil, "CLUSTERFLOW_CODEC_KEY_FILE="+file); err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("a world-readable key file: %v", err)
	}
	if _, err := load(t, nil, "CLUSTERFLOW_CODEC_KEYS=k1 short"); err == nil || strings.Contains(err.Error(), key) {
		t.Fatalf("bad keys in the environment: %v", err)
	}
	cfgFile := filepath.Join(t.TempDir(), "c.yaml")
	_ = os.WriteFile(cfgFile, []byte("codec:\n  keys: \"k1 "+key+"\"\n"), 0o600)
	if _, err := load(t, []string{"--config", cfgFile}); err == nil || !strings.Contains(err.Error(), "codec.keyFile") {
		t.Fatalf("keys in the config file must be refused: %v", err)
	}
	if _, err := load(t, []string{"--codec-origins", "127.0.0.1:8233"}); err == nil || !strings.Contains(err.Error(), "codec origin") {
		t.Fatalf("an origin without a scheme: %v", err)
	}
}

func TestWebSurfaces(t *testing.T) {
	t.Chdir(t.TempDir())
	c, err := load(t, nil)
	if err != nil || c.Temporal.HTTPPort != 0 || len(c.Temporal.UIHosts) != 0 {
		t.Fatalf("the HTTP API is off and the UI answers loopback names only by default: %v %+v", err, c.Temporal)
	}
	c, err = load(t, []string{"--bind", "0.0.0.0", "--http-port", "7243"}, "CLUSTERFLOW_UI_HOSTS=ops.example.internal, 10.1.2.3")
	if err != nil || c.Temporal.HTTPPort != 7243 || strings.Join(c.Temporal.UIHosts, " ") != "ops.example.internal 10.1.2.3" {
		t.Fatalf("ui hosts and HTTP port: %v %+v", err, c.Temporal)
	}
	if got := strings.Join(c.CodecOrigins(), " "); got != "http://127.0.0.1:8233 http://localhost:8233 http://10.1.2.3:8233 http://ops.example.internal:8233" {
		t.Fatalf("codec origins follow the UI's names: %s", got)
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	_ = os.WriteFile(file, []byte("embedded:\n  uiHosts: [ops.example.internal, \"[fd00::1]\"]\n"), 0o600)
	if c, err = load(t, []string{"--config", file}); err != nil || strings.Join(c.Temporal.UIHosts, " ") != "ops.example.internal [fd00::1]" {
		t.Fatalf("ui hosts as a YAML list: %v %+v", err, c.Temporal)
	}
	for _, bad := range []string{"*", "*.example.internal", "ops.example.internal:8233", "a b"} {
		if _, err := load(t, []string{"--ui-hosts", bad}); err == nil || !strings.Contains(err.Error(), "--ui-hosts") {
			t.Errorf("--ui-hosts %q: %v", bad, err)
		}
	}
	if _, err := load(t, []string{"--http-port", "70000"}); err == nil {
		t.Error("HTTP port 70000 accepted")
	}
}

func TestPostgresURL(t *testing.T) {
	t.Chdir(t.TempDir())
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := load(t, []string{"--db", "postgres://cf@db.internal/temporal?sslmode=verify-full&max_conns=7", "--db-password-file", pw})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Temporal.Postgres
	if p == nil || p.Addr != "db.internal:5432" || p.User != "cf" || p.Password != "s3cret" || p.Database != "temporal" ||
		p.VisibilityDatabase != "temporal_visibility" || p.Params["sslmode"] != "verify-full" || p.MaxConns != 7 {
		t.Fatalf("parsed %+v", p)
	}
	if got := c.Database(); strings.Contains(got, "s3cret") || !strings.HasPrefix(got, "postgres://cf@db.internal:5432/temporal") {
		t.Errorf("Database() = %q", got)
	}
	c, err = load(t, nil, "CLUSTERFLOW_DB=postgresql://cf@10.0.0.5:6432/t?visibility_database=v", "CLUSTERFLOW_DB_PASSWORD=p2")
	if err != nil || c.Temporal.Postgres.Password != "p2" || c.Temporal.Postgres.VisibilityDatabase != "v" {
		t.Fatalf("from the environment: %v %+v", err, c.Temporal.Postgres)
	}
	c, err = load(t, nil)
	if err != nil || c.Temporal.Postgres != nil || c.Database() != filepath.Join(".clusterflow", "temporal.db") {
		t.Fatalf("default: %v %+v", err, c.Temporal.Postgres)
	}

	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--db", "postgres://cf:hunter2@db/temporal"}, nil, "holds a password"},
		{[]string{"--db", "postgres://cf@db/temporal?password=hunter2"}, nil, "password parameter"},
		{[]string{"--db", "mysql://cf@db/temporal"}, nil, "scheme"},
		{[]string{"--db", "postgres://db/temporal"}, nil, "no user"},
		{[]string{"--db", "postgres://cf@db/"}, nil, "database name"},
		{[]string{"--db", "postgres://cf@db/te;mporal"}, nil, "database name"},
		{[]string{"--db", "postgres://cf@db/t?sslmod=require"}, nil, "unknown parameter"},
		{[]string{"--db", "postgres://cf@db/t?max_conns=0"}, nil, "max_conns"},
		{[]string{"--db", "postgres://cf@db:99999/t"}, nil, "port"},
		{[]string{"--db", "postgres://cf@db/t", "--db-password-file", pw}, []string{"CLUSTERFLOW_DB_PASSWORD=x"}, "use one"},
		{[]string{"--db-password-file", pw}, nil, "database is SQLite"},
		{[]string{"--db", "postgres://cf@db/t", "--address", "x:7233"}, nil, "no server runs here"},
		{[]string{"--cluster-ports", "7000"}, nil, "PostgreSQL"},
		{[]string{"--db", "postgres://cf@db/t", "--cluster-ports", "40000"}, nil, "below 32768"},
		{[]string{"--db", "postgres://cf@db/t", "--broadcast-address", "host.internal"}, nil, "IP address"},
		{[]string{"--history-shards", "-1"}, nil, "history shards"},
	} {
		_, err := load(t, tc.args, tc.env...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%v %v: %v; want an error with %q that does not quote the password", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestEmbeddedTLS(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, args := range [][]string{
		{"--tls-cert", "s.pem", "--tls-key", "s.key"}, // no CA to check client certificates with
		{"--tls-ca", "ca.pem"},
		{"--tls"},
	} {
		if _, err := load(t, args); err == nil || !strings.Contains(err.Error(), "mTLS needs") {
			t.Errorf("embedded server with %v: %v", args, err)
		}
	}
	if _, err := load(t, []string{"--tls-cert", "s.pem", "--tls-key", "s.key", "--tls-ca", "ca.pem"}); err != nil {
		t.Errorf("embedded server with its certificate, key and CA: %v", err)
	}
}

func TestFrontendList(t *testing.T) {
	t.Chdir(t.TempDir())
	c, err := load(t, []string{"--address", "127.0.0.1:7233, 127.0.0.1:7234"})
	if err != nil {
		t.Fatal(err)
	}
	opts, err := c.ClientOptions(c.Temporal.Address)
	if err != nil {
		t.Fatal(err)
	}
	if opts.HostPort != frontendScheme+":///127.0.0.1:7233" || len(opts.ConnectionOptions.DialOptions) != 1 {
		t.Errorf("two frontends: host-port %q, %d dial options", opts.HostPort, len(opts.ConnectionOptions.DialOptions))
	}
	for _, one := range []string{"temporal.internal:7233", "dns:///temporal.internal:7233"} {
		opts, err := c.ClientOptions(one)
		if err != nil || opts.HostPort != one || len(opts.ConnectionOptions.DialOptions) != 0 {
			t.Errorf("%s: %v %q", one, err, opts.HostPort)
		}
	}
	for _, bad := range []string{"a:1,dns:///b:2", "a:1,b", ","} {
		if _, err := load(t, []string{"--address", bad}); err == nil {
			t.Errorf("address %q accepted", bad)
		}
	}
}
