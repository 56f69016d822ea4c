package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

const pemKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nAAAAMwAAAAtzc2gtZWQyNTUxOQ\n-----END OPENSSH PRIVATE KEY-----\n"

const swarm = "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx"

func TestSecretKey(t *testing.T) {
	for key, want := range map[string]bool{
		"password": true, "Password": true, "db_password": true, "PASSWD": true,
		"token": true, "joinToken": true, "TaskToken": true, "secret": true, "clientSecret": true,
		"apikey": true, "api_key": true, "APIKey": true, "apiKey": true, "api-key": true,
		"passphrase": true, "keyPassphrase": true, "credential": true, "Credentials": true,
		"key": true, "tls.key": true, "sshKey": true, "private_key": true, "PrivateKey": true,
		"host": false, "addr": false, "user": false, "step": false, "kind": false, "error": false,
		"keyword": false, "monkey": false, "publicKey": false, "public_key": false, "hostKey": false,
		"Namespace": false, "TaskQueue": false, "WorkerID": false, "component": false,
	} {
		if got := SecretKey(key); got != want {
			t.Errorf("SecretKey(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestString(t *testing.T) {
	in := "wrote key:\n" + pemKey + "then joined with " + swarm + " 10.0.0.1:2377"
	out := String(in)
	if strings.Contains(out, "b3BlbnNzaC1rZXktdjEA") || strings.Contains(out, "3pu6hszjas19") {
		t.Fatalf("secret left: %q", out)
	}
	if !strings.Contains(out, "wrote key:") || !strings.Contains(out, "[REDACTED PRIVATE KEY]") ||
		!strings.Contains(out, "SWMTKN-[REDACTED] 10.0.0.1:2377") {
		t.Fatalf("context lost: %q", out)
	}
	// A block cut short (truncated output) is masked to the end.
	cut := String("head\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow")
	if cut != "head\n[REDACTED PRIVATE KEY]" {
		t.Fatalf("cut block: %q", cut)
	}
	if s := "nothing to hide"; String(s) != s {
		t.Fatal("plain string changed")
	}
}

type stringer struct{ s string }

func (s stringer) String() string { return s.s }

type lazy struct{}

func (lazy) LogValue() slog.Value { return slog.StringValue("token " + swarm) }

func TestHandler(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		var h slog.Handler
		if format == "json" {
			h = slog.NewJSONHandler(&buf, nil)
		} else {
			h = slog.NewTextHandler(&buf, nil)
		}
		log := slog.New(NewHandler(h)).With("apiKey", "abc123secretvalue", "host", "node-1")
		log.WithGroup("tls").Info("joining with "+swarm,
			"password", "hunter2hunter2",
			"passphrase", 4242424217,
			"stdout", "out\n"+pemKey,
			"error", errors.New("docker swarm join --token "+swarm+" failed"),
			"obj", stringer{"key " + pemKey},
			"lazy", lazy{},
			slog.Group("ssh", "key", "/home/u/.ssh/id_ed25519", "user", "root"),
			"key", "ssh-ed25519 SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
			"count", 3,
		)
		out := buf.String()
		for _, leak := range []string{"abc123secretvalue", "hunter2hunter2", "4242424217", "b3BlbnNzaC1rZXktdjEA", "3pu6hszjas19", "id_ed25519"} {
			if strings.Contains(out, leak) {
				t.Errorf("%s: %q leaked: %s", format, leak, out)
			}
		}
		for _, keep := range []string{"node-1", "root", "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s", "joining with SWMTKN-[REDACTED]", "failed", "count"} {
			if !strings.Contains(out, keep) {
				t.Errorf("%s: %q missing: %s", format, keep, out)
			}
		}
		if format == "json" {
			var m map[string]any
			if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
				t.Fatalf("json: %v: %s", err, out)
			}
			if m["apiKey"] != Mask || m["tls"].(map[string]any)["password"] != Mask {
				t.Errorf("json fields: %s", out)
			}
		}
	}
}

// TestStringClasses checks each class of secret String masks: the secret is gone,
// the text around it stays.
func TestStringClasses(t *testing.T) {
	const (
		codecKey  = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=" // 32 bytes
		urlKey    = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA"  // the same, unpadded
		gossip16  = "3q2+7wAAAAD/////EjRWeA=="                     // 16 bytes
		pemMiddle = "MIIEowIBAAKCAQEAwJ3nSe6g1P5mQ0bVvX8Hc2xq9f0sJ4kHqT2rLw8pYc3nBm5v\nA7sN2dXqKfGhJkLmNoPqRsTuVwXyZaBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgH"
	)
	for _, tc := range []struct {
		name, in   string
		leak, keep []string
	}{
		{"pem tail without BEGIN", "...cut\n" + pemMiddle + "\nbmQ0bVvX8Hc2xq9f0sJ4kHqT2rLw8pYc3nBm5vA7sN2dX==\n-----END RSA PRIVATE KEY-----\ndone: exit 0",
			[]string{"MIIEowIBAAKCAQEA", "A7sN2dXqKfGhJk", "bmQ0bVvX8Hc2"}, []string{"[REDACTED PRIVATE KEY]", "done: exit 0"}},
		{"pem tail cut mid-line", "AKCAQEAwJ3nSe6g1P5mQ0bVvX8Hc2xq\nMIIEowIBAAKCAQEAwJ3n\n-----END OPENSSH PRIVATE KEY-----",
			[]string{"AKCAQEAwJ3nSe6g1P5", "MIIEowIBAAKCAQEAwJ3n"}, []string{"[REDACTED PRIVATE KEY]"}},
		{"pgp private key", "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF1x\n-----END PGP PRIVATE KEY BLOCK-----\nok",
			[]string{"lQOYBF1x"}, []string{"ok"}},
		{"consul keygen output", "$ consul keygen\n" + codecKey + "\n", []string{codecKey}, []string{"consul keygen"}},
		{"consul config", `{"encrypt": "` + gossip16 + `", "datacenter": "dc1"}`, []string{gossip16}, []string{"datacenter", "dc1"}},
		{"consul flag", "consul agent -encrypt=" + codecKey + " -server", []string{codecKey, "q83vEjRWeJCr"}, []string{"consul agent", "-server"}},
		{"codec keyring line", "k1 " + codecKey, []string{codecKey}, []string{"k1 "}},
		{"codec keyring, url-safe", "2025-06 " + urlKey + "\n2025-01 " + urlKey, []string{urlKey}, []string{"2025-06", "2025-01"}},
		{"codec keys in the environment", "CLUSTERFLOW_CODEC_KEYS=k2 " + codecKey + ",k1 " + urlKey, []string{codecKey, urlKey}, []string{"k2", "k1"}},
		{"gossip key next to a word", "gossip key is " + gossip16 + " (16 bytes)", []string{gossip16}, []string{"gossip key is", "(16 bytes)"}},
		{"password=", "mysql -u root --password=hunter2hunter2 -h db", []string{"hunter2hunter2"}, []string{"mysql -u root --password=", "-h db"}},
		{"DB_PASSWORD env", "env DB_PASSWORD='s3cr3t value' PGUSER=app", []string{"s3cr3t"}, []string{"DB_PASSWORD=", "PGUSER=app"}},
		{"password: yaml", "password: hunter2hunter2\nuser: admin", []string{"hunter2hunter2"}, []string{"user: admin"}},
		{"query string", "GET /login?user=a&password=hunter2hunter2&next=/", []string{"hunter2hunter2"}, []string{"user=a", "&next=/"}},
		{"separate flag value", "vault login --token hvs.CAESIJ0xyz", []string{"hvs.CAESIJ0xyz"}, []string{"vault login --token "}},
		{"client_secret:", `client_secret: "abcd1234efgh"`, []string{"abcd1234efgh"}, []string{"client_secret"}},
		{"authorization bearer", "curl -H 'Authorization: Bearer eyJhbGciOi.eyJzdWIi.sig' https://api.internal/x",
			[]string{"eyJhbGciOi"}, []string{"Authorization: Bearer [REDACTED]", "https://api.internal/x"}},
		{"authorization basic in a dump", "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dXNlcjpwYXNz\r\nAccept: */*",
			[]string{"dXNlcjpwYXNz"}, []string{"Host: x", "Accept: */*"}},
		{"proxy-authorization", "Proxy-Authorization: Digest username=\"u\", response=\"6629fae49393a05397450978507c4ef1\"",
			[]string{"6629fae4"}, []string{"Proxy-Authorization: Digest [REDACTED]"}},
		{"cookie", "Cookie: _csrf=0123456789abcdef; session=deadbeefcafe\nnext line", []string{"0123456789abcdef", "deadbeefcafe"}, []string{"next line"}},
		{"set-cookie", "Set-Cookie: sid=31d4d96e407aad42; Path=/; HttpOnly", []string{"31d4d96e407aad42"}, []string{"Set-Cookie: [REDACTED]"}},
		{"postgres dsn", "dial postgres://app:pa55w0rd@db.internal:5432/temporal failed", []string{"pa55w0rd"}, []string{"postgres://app:[REDACTED]@db.internal:5432/temporal failed"}},
		{"redis dsn without user", "redis://:t0ps3cret@cache:6379/0", []string{"t0ps3cret"}, []string{"redis://:[REDACTED]@cache:6379/0"}},
		{"mysql dsn", "mysql://root:r00tpw@tcp(127.0.0.1:3306)/db", []string{"r00tpw"}, []string{"mysql://root:"}},
	} {
		out := String(tc.in)
		for _, leak := range tc.leak {
			if strings.Contains(out, leak) {
				t.Errorf("%s: %q left in %q", tc.name, leak, out)
			}
		}
		for _, keep := range tc.keep {
			if !strings.Contains(out, keep) {
				t.Errorf("%s: %q lost from %q", tc.name, keep, out)
			}
		}
	}
}

// TestStringKeeps checks what String must leave alone: host key fingerprints,
// public keys, hashes, URLs without a password, IDs, prose.
func TestStringKeeps(t *testing.T) {
	for _, s := range []string{
		"host key ssh-ed25519 SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s accepted",
		"127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
		"sha256 of consul_1.22.7_linux_amd64.zip: 0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
		"ssh://root@10.0.0.5:22 and https://github.com/hashicorp/consul",
		"run 6c1f3d2e-8a4b-4c5d-9e6f-0a1b2c3d4e5f of playbook/hello completed",
		"the join token rotated; the secret store is empty",
		"the file /var/cache/clusterflow/consul/1.22.7/consul is missing",
		"cookies: 3, tokens: 5",
	} {
		if got := String(s); got != s {
			t.Errorf("String(%q) = %q", s, got)
		}
	}
}
