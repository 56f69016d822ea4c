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
