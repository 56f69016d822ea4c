package codec

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/encoding/protojson"
)

func newKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, keySize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func keyring(t *testing.T, lines ...string) *Keyring {
	t.Helper()
	k, err := ParseKeys(strings.Join(lines, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeKeyFile(t *testing.T, text string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

type secretInput struct {
	Playbook string
	Token    string
}

func TestRoundTrip(t *testing.T) {
	dc := New(keyring(t, "k1 "+newKey(t))).DataConverter()
	in := secretInput{Playbook: "rotate-ca", Token: "s3cret"}
	p, err := dc.ToPayload(in)
	if err != nil {
		t.Fatal(err)
	}
	if !Encrypted(p) || string(p.Metadata[MetadataKeyID]) != "k1" {
		t.Fatalf("metadata: %v", p.Metadata)
	}
	if bytes.Contains(p.Data, []byte("rotate-ca")) || bytes.Contains(p.Data, []byte("s3cret")) {
		t.Fatal("payload data holds the input in clear")
	}
	var out secretInput
	if err := dc.FromPayload(p, &out); err != nil || out != in {
		t.Fatalf("round trip: %v %+v", err, out)
	}
	// The same value twice: different ciphertexts (a fresh nonce each time).
	p2, _ := dc.ToPayload(in)
	if bytes.Equal(p.Data, p2.Data) {
		t.Fatal("two encryptions of one value are equal")
	}
}

func TestRotation(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	before := New(keyring(t, "2025-01 "+k1))
	after := New(keyring(t, "# rotated", "2025-06 "+k2, "2025-01 "+k1))
	if after.Keys().Current() != "2025-06" {
		t.Fatalf("current key %s", after.Keys().Current())
	}
	old, err := before.DataConverter().ToPayload("written before")
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := after.DataConverter().FromPayload(old, &s); err != nil || s != "written before" {
		t.Fatalf("old key after rotation: %v %q", err, s)
	}
	fresh, err := after.DataConverter().ToPayload("written after")
	if err != nil {
		t.Fatal(err)
	}
	if id := string(fresh.Metadata[MetadataKeyID]); id != "2025-06" {
		t.Fatalf("new payloads use key %s", id)
	}
	_, err = before.Decode([]*commonpb.Payload{fresh})
	if err == nil || !strings.Contains(err.Error(), `"2025-06"`) {
		t.Fatalf("unknown key ID must be named: %v", err)
	}
}

func TestTampered(t *testing.T) {
	c := New(keyring(t, "a "+newKey(t), "b "+newKey(t)))
	enc, err := c.Encode([]*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"x"`)}})
	if err != nil {
		t.Fatal(err)
	}
	flipped := &commonpb.Payload{Metadata: enc[0].Metadata, Data: bytes.Clone(enc[0].Data)}
	flipped.Data[len(flipped.Data)-1] ^= 1
	relabelled := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte(Encoding), MetadataKeyID: []byte("b")}, Data: enc[0].Data}
	short := &commonpb.Payload{Metadata: enc[0].Metadata, Data: enc[0].Data[:10]}
	for name, p := range map[string]*commonpb.Payload{"flipped bit": flipped, "relabelled": relabelled, "truncated": short} {
		if _, err := c.Decode([]*commonpb.Payload{p}); err == nil {
			t.Errorf("%s: decoded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestPlaintextPassesThrough(t *testing.T) {
	c := New(keyring(t, "k1 "+newKey(t)))
	plain, err := converter.GetDefaultDataConverter().ToPayload(secretInput{Playbook: "old"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Decode([]*commonpb.Payload{plain})
	if err != nil || out[0] != plain {
		t.Fatalf("an unencrypted payload must pass unchanged: %v", err)
	}
	var in secretInput
	if err := c.DataConverter().FromPayload(plain, &in); err != nil || in.Playbook != "old" {
		t.Fatalf("history from before the codec: %v %+v", err, in)
	}
}

func TestKeyFile(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	path := writeKeyFile(t, "# payload keys\n\nnew "+k2+"\nold "+k1+"\n", 0o600)
	k, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if k.Current() != "new" || strings.Join(k.IDs(), ",") != "new,old" {
		t.Fatalf("keyring %s", k)
	}
	if strings.Contains(k.String(), k1) {
		t.Fatal("a keyring prints its keys")
	}

	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	for _, tc := range []struct {
		text string
		mode os.FileMode
		want string
	}{
		{"k1 " + k1 + "\n", 0o644, "open to other users (mode 0644)"},
		{"k1 " + k1 + "\n", 0o606, "chmod 600"},
		{"# a\nk1 " + k1 + "\nk2\n", 0o600, ":3: want \"ID BASE64KEY\""},
		{"k1 " + short + "\n", 0o600, ":1: key: 16 bytes; AES-256 needs 32"},
		{"k1 " + k1 + "\nk1 " + k2 + "\n", 0o600, `:2: key ID repeats codec key file`},
		{"k/1 " + k1 + "\n", 0o600, `:1: key ID: use 1 to 64 letters`},
		{"k1 not*base64\n", 0o600, ":1: key: not base64"},
		// Swapped fields: the key stands where the ID belongs, in each base64 form.
		{k1 + " k1\n", 0o600, ":1: the first field is a 32-byte base64 key"},
		{strings.TrimRight(urlsafe(k1), "=") + " k1\n", 0o600, ":1: the first field is a 32-byte base64 key"},
		{k1 + " " + k2 + "\n", 0o600, ":1: the first field is a 32-byte base64 key"},
		{"k1" + k1 + "\n", 0o600, ":1: want \"ID BASE64KEY\", found 1 fields"},
		{"k1=" + k1 + "\n", 0o600, ":1: want \"ID BASE64KEY\", found 1 fields"},
		{short + " k1\n", 0o600, ":1: key ID: use 1 to 64"},
		{"# nothing\n", 0o600, "no keys found"},
	} {
		path := writeKeyFile(t, tc.text, tc.mode)
		_, err := LoadKeyFile(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q (mode %04o): error %v, want %q naming the file", tc.text, tc.mode, err, tc.want)
			continue
		}
		for _, secret := range []string{k1, k2, short, urlsafe(k1), k1[:20], strings.TrimRight(urlsafe(k1), "=")[20:]} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error quotes key material: %v", err)
			}
		}
	}
	if _, err := LoadKeyFile(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
}

// urlsafe is standard base64 text in the URL-safe alphabet.
func urlsafe(std string) string { return strings.NewReplacer("+", "-", "/", "_").Replace(std) }

func TestParseKeysEnv(t *testing.T) {
	k, err := ParseKeys("b " + newKey(t) + ", a " + newKey(t))
	if err != nil || k.Current() != "b" || len(k.IDs()) != 2 {
		t.Fatalf("comma-separated keys: %v %v", err, k)
	}
	if _, err := ParseKeys("a " + newKey(t) + ",b"); err == nil || !strings.Contains(err.Error(), KeysEnv+" entry 2") {
		t.Fatalf("env error must name the entry: %v", err)
	}
}

func TestHandler(t *testing.T) {
	c := New(keyring(t, "k1 "+newKey(t)))
	const origin = "http://127.0.0.1:8233"
	srv := httptest.NewServer(Handler(c, []string{origin}, "127.0.0.1:8234"))
	defer srv.Close()

	enc, err := c.DataConverter().ToPayloads("hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := protojson.Marshal(enc)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/decode", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", origin)
	req.Header.Set("X-Namespace", "default")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	_, _ = got.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != origin {
		t.Fatalf("decode: %s %v: %s", resp.Status, resp.Header, got.String())
	}
	var dec commonpb.Payloads
	if err := protojson.Unmarshal(got.Bytes(), &dec); err != nil {
		t.Fatalf("decode answer %s: %v", got.String(), err)
	}
	var s string
	if err := converter.GetDefaultDataConverter().FromPayloads(&dec, &s); err != nil || s != "hello" {
		t.Fatalf("decoded %v %q", err, s)
	}

	pre, _ := http.NewRequest(http.MethodOptions, srv.URL+"/decode", nil)
	pre.Header.Set("Origin", origin)
	pre.Header.Set("Access-Control-Request-Method", "POST")
	pre.Header.Set("Access-Control-Request-Headers", "content-type,x-namespace")
	resp, err = http.DefaultClient.Do(pre)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "X-Namespace") {
		t.Fatalf("preflight: %s %v", resp.Status, resp.Header)
	}

	evil, _ := http.NewRequest(http.MethodPost, srv.URL+"/decode", bytes.NewReader(body))
	evil.Header.Set("Origin", "http://evil.example")
	resp, err = http.DefaultClient.Do(evil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("other origin: %s %v", resp.Status, resp.Header)
	}
}

// TestHandlerEncodeOnLoopbackOnly: an endpoint on a loopback address encodes; one
// that listens beyond it (0.0.0.0, a LAN address) decodes only.
func TestHandlerEncodeOnLoopbackOnly(t *testing.T) {
	c := New(keyring(t, "k1 "+newKey(t)))
	plain, err := converter.GetDefaultDataConverter().ToPayloads("hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := protojson.Marshal(plain)
	for addr, want := range map[string]int{
		"127.0.0.1:8234": http.StatusOK, "localhost:8234": http.StatusOK, "[::1]:8234": http.StatusOK,
		"0.0.0.0:8234": http.StatusForbidden, ":8234": http.StatusForbidden, "192.168.1.5:8234": http.StatusForbidden,
	} {
		srv := httptest.NewServer(Handler(c, nil, addr))
		for path, code := range map[string]int{"/encode": want, "/decode": http.StatusOK} {
			resp, err := http.Post(srv.URL+path, "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != code {
				t.Errorf("%s on %s: %s %s, want %d", path, addr, resp.Status, msg, code)
			}
			if resp.StatusCode == http.StatusForbidden && !strings.Contains(string(msg), "only decodes") {
				t.Errorf("%s on %s: refusal does not say why: %s", path, addr, msg)
			}
		}
		srv.Close()
	}
}

func TestFailureMessagesEncrypted(t *testing.T) {
	fc := New(keyring(t, "k1 "+newKey(t))).FailureConverter()
	f := fc.ErrorToFailure(temporal.NewNonRetryableApplicationError("exit 3: s3cret output", "PlaybookFailed", nil))
	if strings.Contains(f.GetMessage(), "s3cret") || strings.Contains(f.GetStackTrace(), "s3cret") || !Encrypted(f.GetEncodedAttributes()) {
		t.Fatalf("failure in clear: %v", f)
	}
	var appErr *temporal.ApplicationError
	if err := fc.FailureToError(f); !errors.As(err, &appErr) || appErr.Type() != "PlaybookFailed" || !strings.Contains(err.Error(), "s3cret output") {
		t.Fatalf("failure back: %v", err)
	}
}
