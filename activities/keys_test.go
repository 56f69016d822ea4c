package activities

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// These tests cover the key activities' pure logic and their worker-side files, in
// temporary directories only: never this machine's ~/.ssh. Their remote side is
// covered by the lab test (internal/e2e, -tags lab).

func newTestKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func b64(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func kl(k ssh.PublicKey, comment string) keyLine {
	return keyLine{key: rp(k), line: rp(k).AuthorizedLine(comment)}
}

// rp is k as the remote layer has it; sk is the other way round.
func rp(k ssh.PublicKey) remote.PublicKey {
	p, _, _, err := remote.ParseAuthorizedKey(b64(k))
	if err != nil {
		panic(err)
	}
	return p
}

func sk(k remote.PublicKey) ssh.PublicKey {
	p, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.AuthorizedLine("")))
	if err != nil {
		panic(err)
	}
	return p
}

func rps(keys ...ssh.PublicKey) []remote.PublicKey {
	out := make([]remote.PublicKey, len(keys))
	for i, k := range keys {
		out[i] = rp(k)
	}
	return out
}

func TestMergeAuthorizedKeys(t *testing.T) {
	a, b, c, d, ca := newTestKey(t), newTestKey(t), newTestKey(t), newTestKey(t), newTestKey(t)
	in := strings.Join([]string{
		"# managed by hand",
		b64(a) + " alice@laptop",
		"",
		`from="192.0.2.0/24",no-pty ` + b64(b) + " old-cluster", // to remove, options and all
		"this line is not a key",
		b64(c) + " first",
		`command="/bin/false" ` + b64(c) + " second copy with options", // duplicate of a wanted key
		"cert-authority " + b64(ca) + " a CA, not a key",
		b64(a) + " alice again", // unrelated duplicate: not ours to judge
	}, "\n") + "\n"

	out, added, removed := mergeAuthorizedKeys([]byte(in), []keyLine{kl(c, "cluster"), kl(d, "node1"), kl(d, "node1 again"), kl(ca, "ca as key")}, []keyLine{kl(b, "")})
	want := strings.Join([]string{
		"# managed by hand",
		b64(a) + " alice@laptop",
		"",
		"this line is not a key",
		b64(c) + " first",
		"cert-authority " + b64(ca) + " a CA, not a key",
		b64(a) + " alice again",
		b64(d) + " node1",
		b64(ca) + " ca as key",
	}, "\n") + "\n"
	if string(out) != want {
		t.Fatalf("merged:\n%s\nwant:\n%s", out, want)
	}
	if added != 2 || removed != 2 {
		t.Fatalf("added %d removed %d, want 2 and 2", added, removed)
	}

	// A second merge with the same wishes changes nothing, byte for byte.
	again, added, removed := mergeAuthorizedKeys(out, []keyLine{kl(c, "other comment"), kl(d, "x")}, []keyLine{kl(b, "")})
	if string(again) != string(out) || added != 0 || removed != 0 {
		t.Fatalf("second merge changed the file: +%d -%d\n%s", added, removed, again)
	}
}

func TestMergeAuthorizedKeysEdges(t *testing.T) {
	a, b := newTestKey(t), newTestKey(t)
	// Empty or missing file.
	out, added, _ := mergeAuthorizedKeys(nil, []keyLine{kl(a, "c")}, nil)
	if string(out) != b64(a)+" c\n" || added != 1 {
		t.Fatalf("from empty: %q", out)
	}
	// No final newline: kept when nothing changes, added when a line is appended.
	noNL := []byte(b64(a) + " c")
	if out, _, _ := mergeAuthorizedKeys(noNL, []keyLine{kl(a, "")}, nil); string(out) != string(noNL) {
		t.Fatalf("unchanged file rewritten: %q", out)
	}
	if out, _, _ := mergeAuthorizedKeys(noNL, []keyLine{kl(b, "n")}, nil); string(out) != b64(a)+" c\n"+b64(b)+" n\n" {
		t.Fatalf("append after a last line without newline: %q", out)
	}
	// Removing the only key leaves an empty file; CRLF lines are understood.
	if out, _, removed := mergeAuthorizedKeys([]byte(b64(a)+" c\r\n"), nil, []keyLine{kl(a, "")}); len(out) != 0 || removed != 1 {
		t.Fatalf("remove last key: %q, removed %d", out, removed)
	}
}

func TestParseKeyLinesRefusesOptionsAndGarbage(t *testing.T) {
	h := remote.Host{Name: "h", Address: "192.0.2.1"}
	a := newTestKey(t)
	for _, bad := range []string{"", "ssh-ed25519", "nonsense AAAA", `no-pty ` + b64(a)} {
		if _, err := parseKeyLines(h, []string{bad}); err == nil {
			t.Errorf("%q: want an error", bad)
		} else {
			requireAppErr(t, err, ErrInvalidInput, false)
		}
	}
	got, err := parseKeyLines(h, []string{b64(a) + "  spaced   comment "})
	if err != nil || got[0].line != b64(a)+" spaced   comment" {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestMergeKnownHosts(t *testing.T) {
	m1, m2, s1, stale, other, revoked := newTestKey(t), newTestKey(t), newTestKey(t), newTestKey(t), newTestKey(t), newTestKey(t)
	ecKey := newECDSAKey(t)
	hosts := []knownHost{
		{names: []string{"192.0.2.11", "master"}, keys: rps(m1, ecKey)},
		{names: []string{"[192.0.2.12]:2222", "[slave01]:2222"}, keys: rps(s1, revoked)},
		{names: []string{"192.0.2.13", "slave02"}, keys: rps(m2)},
	}
	in := strings.Join([]string{
		"# my hosts",
		knownhosts.Line([]string{"github.com"}, other),
		knownhosts.Line([]string{"192.0.2.11"}, m1),              // already there, by address
		knownhosts.Line([]string{"192.0.2.11"}, m1),              // duplicate
		knownhosts.Line([]string{"master"}, stale),               // stale: master has another ed25519 key now
		knownhosts.Line([]string{"master", "github.com"}, stale), // mixed: not ours alone, kept
		"|1|" + hashed(t, "slave02") + " " + b64(m2),             // hashed entry for slave02's name
		"@revoked * " + b64(revoked),                             // never add a revoked key
		"@cert-authority *.example.com " + b64(other),
		"garbage line",
	}, "\n") + "\n"

	out, added, removed := mergeKnownHosts([]byte(in), hosts)
	got := string(out)
	mustHave := []string{
		"# my hosts",
		knownhosts.Line([]string{"github.com"}, other),
		knownhosts.Line([]string{"192.0.2.11"}, m1),
		knownhosts.Line([]string{"master", "github.com"}, stale),
		"garbage line",
		"@revoked * " + b64(revoked),
		knownhosts.Line([]string{"master"}, m1),
		knownhosts.Line([]string{"192.0.2.11", "master"}, ecKey),
		knownhosts.Line([]string{"[192.0.2.12]:2222", "[slave01]:2222"}, s1),
		knownhosts.Line([]string{"192.0.2.13"}, m2),
	}
	for _, l := range mustHave {
		if !strings.Contains(got, l+"\n") {
			t.Errorf("missing line %q", l)
		}
	}
	if strings.Count(got, knownhosts.Line([]string{"192.0.2.11"}, m1)+"\n") != 1 {
		t.Errorf("duplicate line kept:\n%s", got)
	}
	if strings.Contains(got, knownhosts.Line([]string{"master"}, stale)+"\n") {
		t.Errorf("stale line kept:\n%s", got)
	}
	if strings.Contains(got, "slave01]:2222 "+revoked.Type()+" "+b64(revoked)[len(revoked.Type())+1:]) {
		t.Errorf("revoked key added:\n%s", got)
	}
	if added != 4 || removed != 2 {
		t.Errorf("added %d removed %d, want 4 and 2\n%s", added, removed, got)
	}

	// What was written is complete: a second merge changes nothing.
	again, added, removed := mergeKnownHosts(out, hosts)
	if string(again) != got || added != 0 || removed != 0 {
		t.Fatalf("second merge: +%d -%d\n%s", added, removed, again)
	}

	// And x/crypto's own known_hosts reader agrees: every name has every key.
	file := filepath.Join(t.TempDir(), "known_hosts")
	// (It refuses unparseable lines: those were kept as they were, but not here.)
	if err := os.WriteFile(file, []byte(strings.Replace(got, "garbage line\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	check, err := knownhosts.New(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		for _, n := range h.names {
			for _, k := range h.keys {
				if k.Equal(rp(revoked)) {
					continue
				}
				addr := n
				if !strings.HasPrefix(n, "[") {
					addr = n + ":22"
				}
				if err := check(addr, &net.TCPAddr{IP: net.IPv4zero}, sk(k)); err != nil {
					t.Errorf("%s %s: %v", n, k.Type(), err)
				}
			}
		}
	}
}

func TestParseKnownHostsEntries(t *testing.T) {
	h := remote.Host{Name: "h", Address: "192.0.2.1"}
	k := newTestKey(t)
	got, err := parseKnownHostsEntries(h, []KnownHostsEntry{
		{Name: "master", Address: "192.0.2.11", Keys: []string{b64(k)}},
		{Name: "n2", Address: "192.0.2.12", Port: 2222, Keys: []string{b64(k)}},
		{Name: "192.0.2.13", Address: "192.0.2.13", Port: 22, Keys: []string{b64(k)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"192.0.2.11", "master"}, {"[192.0.2.12]:2222", "[n2]:2222"}, {"192.0.2.13"}}
	for i := range want {
		if strings.Join(got[i].names, " ") != strings.Join(want[i], " ") {
			t.Errorf("entry %d names %q, want %q", i, got[i].names, want[i])
		}
	}
	for _, bad := range []KnownHostsEntry{{Name: "a,b", Address: "192.0.2.1"}, {Name: "x", Address: "*"}, {Name: "x", Address: ""}} {
		if _, err := parseKnownHostsEntries(h, []KnownHostsEntry{bad}); err == nil {
			t.Errorf("%+v: want an error", bad)
		}
	}
}

func TestClusterKeyLifecycle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys") // missing: created 0700
	key := filepath.Join(dir, "cluster")
	k := NewKeys(nil)
	ctx := context.Background()

	first, err := k.EnsureClusterKey(ctx, EnsureClusterKeyRequest{ClusterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if !first.Current.Generated || first.Next != nil || first.Retired != "" {
		t.Fatalf("first: %+v", first)
	}
	assertMode(t, dir, 0o700)
	assertMode(t, key, 0o600)
	assertMode(t, key+".pub", 0o644)
	assertPairMatches(t, key, first.Current)
	// Nothing secret in the result (it goes to workflow history).
	js, _ := json.Marshal(first)
	if strings.Contains(string(js), "PRIVATE") || strings.Contains(string(js), string(mustRead(t, key))[40:80]) {
		t.Fatalf("result carries private key material: %s", js)
	}

	// Idempotent; a loosened mode is fixed; a lost .pub is rewritten.
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(key + ".pub")
	second, err := k.EnsureClusterKey(ctx, EnsureClusterKeyRequest{ClusterKey: key})
	if err != nil || second.Current.Generated || second.Current.Fingerprint != first.Current.Fingerprint {
		t.Fatalf("second: %+v, %v", second, err)
	}
	assertMode(t, key, 0o600)
	assertPairMatches(t, key, second.Current)

	// Rotate: a next pair, reused by a resumed rotation.
	rot, err := k.EnsureClusterKey(ctx, EnsureClusterKeyRequest{ClusterKey: key, Rotate: true})
	if err != nil || rot.Next == nil || !rot.Next.Generated || rot.Next.Path != key+NextKeySuffix {
		t.Fatalf("rotate: %+v, %v", rot, err)
	}
	assertMode(t, key+NextKeySuffix, 0o600)
	resumed, err := k.EnsureClusterKey(ctx, EnsureClusterKeyRequest{ClusterKey: key, Rotate: true})
	if err != nil || resumed.Next.Fingerprint != rot.Next.Fingerprint || resumed.Next.Generated {
		t.Fatalf("resumed rotation: %+v, %v", resumed, err)
	}

	// Promotion refuses a key other than the one the hosts were given.
	if _, err := k.PromoteClusterKey(ctx, PromoteClusterKeyRequest{ClusterKey: key, Fingerprint: "SHA256:other"}); err == nil {
		t.Fatal("promoted an unexpected key")
	}
	pr, err := k.PromoteClusterKey(ctx, PromoteClusterKeyRequest{ClusterKey: key, Fingerprint: rot.Next.Fingerprint})
	if err != nil || !pr.Changed || pr.Current.Fingerprint != rot.Next.Fingerprint {
		t.Fatalf("promote: %+v, %v", pr, err)
	}
	assertPairMatches(t, key, pr.Current)
	assertMode(t, key, 0o600)
	assertMode(t, key+OldKeySuffix, 0o600)
	for _, gone := range []string{key + NextKeySuffix, key + NextKeySuffix + ".pub"} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("%s still exists", gone)
		}
	}
	// A retried promotion is a no-op.
	if pr2, err := k.PromoteClusterKey(ctx, PromoteClusterKeyRequest{ClusterKey: key, Fingerprint: rot.Next.Fingerprint}); err != nil || pr2.Changed {
		t.Fatalf("second promote: %+v, %v", pr2, err)
	}

	// The replaced key is reported as retired from now on, so every run removes it.
	after, err := k.EnsureClusterKey(ctx, EnsureClusterKeyRequest{ClusterKey: key})
	if err != nil || after.Current.Fingerprint != rot.Next.Fingerprint {
		t.Fatalf("after: %+v, %v", after, err)
	}
	oldKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(after.Retired))
	if err != nil || ssh.FingerprintSHA256(oldKey) != first.Current.Fingerprint {
		t.Fatalf("retired %q (%v), want the first key %s", after.Retired, err, first.Current.Fingerprint)
	}
}

func TestPromoteAfterCrashBetweenSteps(t *testing.T) {
	key := filepath.Join(t.TempDir(), "cluster")
	k := NewKeys(nil)
	ctx := context.Background()
	if _, err := k.EnsureClusterKey(ctx, EnsureClusterKeyRequest{ClusterKey: key}); err != nil {
		t.Fatal(err)
	}
	rot, err := k.EnsureClusterKey(ctx, EnsureClusterKeyRequest{ClusterKey: key, Rotate: true})
	if err != nil {
		t.Fatal(err)
	}
	// Crash after the rename, before the .pub files followed.
	if err := os.Rename(key+NextKeySuffix, key); err != nil {
		t.Fatal(err)
	}
	pr, err := k.PromoteClusterKey(ctx, PromoteClusterKeyRequest{ClusterKey: key, Fingerprint: rot.Next.Fingerprint})
	if err != nil || pr.Current.Fingerprint != rot.Next.Fingerprint {
		t.Fatalf("promote after crash: %+v, %v", pr, err)
	}
	assertPairMatches(t, key, pr.Current)
}

func TestClusterKeyRefusesBadPaths(t *testing.T) {
	k := NewKeys(nil)
	dir := t.TempDir()
	enc := filepath.Join(dir, "enc")
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, enc, block)
	junk := filepath.Join(dir, "junk")
	if err := os.WriteFile(junk, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"", "relative/key", "/a/../b", "/tmp/key.pub", enc, junk} {
		_, err := k.EnsureClusterKey(context.Background(), EnsureClusterKeyRequest{ClusterKey: p})
		requireAppErr(t, err, ErrInvalidInput, false)
	}
}

func TestRecordOperatorKnownHosts(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "known_hosts")
	ed, other := newTestKey(t), newTestKey(t)
	// The host is known by its ed25519 key, as the pool pinned it.
	if err := os.WriteFile(file, []byte(knownhosts.Line([]string{"192.0.2.11"}, ed)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := remote.Host{Name: "master", Address: "192.0.2.11", Port: 22, User: "root", KnownHostsFile: file}
	h2 := remote.Host{Name: "n2", Address: "192.0.2.12", Port: 2222, User: "root", KnownHostsFile: filepath.Join(dir, "new", "known_hosts")}
	ecKey := newECDSAKey(t)
	req := RecordOperatorKnownHostsRequest{Hosts: []OperatorHostKeys{
		{Host: h, Keys: []string{b64(ed), b64(ecKey)}},
		{Host: h2, Keys: []string{b64(other)}},
	}}
	k := NewKeys(nil)
	res, err := k.RecordOperatorKnownHosts(context.Background(), req)
	if err != nil || strings.Join(res.Changed, ",") != "master,n2" {
		t.Fatalf("first: %+v, %v", res, err)
	}
	got := string(mustRead(t, file))
	want := knownhosts.Line([]string{"192.0.2.11"}, ed) + "\n" + knownhosts.Line([]string{"192.0.2.11"}, ecKey) + "\n"
	if got != want {
		t.Fatalf("file:\n%s\nwant:\n%s", got, want)
	}
	assertMode(t, h2.KnownHostsFile, 0o600)
	if got := string(mustRead(t, h2.KnownHostsFile)); got != knownhosts.Line([]string{"[192.0.2.12]:2222"}, other)+"\n" {
		t.Fatalf("new file: %q", got)
	}
	res, err = k.RecordOperatorKnownHosts(context.Background(), req)
	if err != nil || len(res.Changed) != 0 || string(mustRead(t, file)) != want {
		t.Fatalf("second: %+v, %v", res, err)
	}
}

func TestHostPatternMatchesHashed(t *testing.T) {
	p := knownhosts.HashHostname("master")
	if !hostPatternMatches(p, "master") || hostPatternMatches(p, "slave01") {
		t.Fatal("hashed pattern")
	}
	if !hostPatternMatches("Master", "master") || hostPatternMatches("mast*", "master") || hostPatternMatches("!master", "master") {
		t.Fatal("plain pattern")
	}
}

// --- helpers

func hashed(t *testing.T, name string) string {
	t.Helper()
	return strings.TrimPrefix(knownhosts.HashHostname(name), "|1|")
}

// newECDSAKey returns a key of a second type, for "one host, several key types".
func newECDSAKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, p string, block *pem.Block) {
	t.Helper()
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func assertMode(t *testing.T, p string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), want)
	}
}

// assertPairMatches checks that the private key, the .pub file and info agree.
func assertPairMatches(t *testing.T, key string, info KeyInfo) {
	t.Helper()
	s, err := ssh.ParsePrivateKey(mustRead(t, key))
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(mustRead(t, key+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	fp := ssh.FingerprintSHA256(s.PublicKey())
	if ssh.FingerprintSHA256(pub) != fp || info.Fingerprint != fp || !strings.HasPrefix(info.PublicKey, b64(s.PublicKey())) {
		t.Fatalf("%s: private %s, .pub %s, info %+v", key, fp, ssh.FingerprintSHA256(pub), info)
	}
}
