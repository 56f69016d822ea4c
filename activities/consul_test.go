package activities

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/sshtest"
	"github.com/clusterflow/clusterflow/playbooks"
)

// These tests run the Consul activities that are safe on this machine through a
// loopback sshd, with every host path pointed into a temporary directory: the
// gossip key on the worker, the binary (file and url sources), the configuration
// file, and the cluster check against a fake HTTP API. Starting real agents runs on
// the lab nodes (internal/e2e, -tags lab).

// consulForTest returns Consul activities whose host paths are in a temporary
// directory.
func consulForTest(t *testing.T) *Consul {
	t.Helper()
	c := NewConsul(sshtest.Pool(t, remote.PoolOptions{}, nil))
	dir := t.TempDir()
	c.binDir = filepath.Join(dir, "bin")
	c.configDir = filepath.Join(dir, "consul.d")
	c.dataDir = filepath.Join(dir, "data")
	c.unitFile = filepath.Join(dir, "consul.service")
	c.sourceFile = filepath.Join(dir, "state", "consul-source")
	if err := os.MkdirAll(c.binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConsulUnitText(t *testing.T) {
	if unit := consulUnitText("/usr/local/bin/consul", "/etc/consul.d"); !strings.Contains(unit, "ExecStart=/usr/local/bin/consul agent -config-dir=/etc/consul.d\n") {
		t.Errorf("unit:\n%s", unit)
	}
}

// TestEnsureGossipKey checks the key file on the worker: made once (0600, in a
// 0700 directory), the same key for every caller, even racing ones, and never in
// what the activity returns.
func TestEnsureGossipKey(t *testing.T) {
	c := NewConsul(nil)
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "config", "clusterflow", "consul-gossip.key")

	// Eight workers race to create it: one generates, all agree.
	var wg sync.WaitGroup
	infos := make([]GossipKeyInfo, 8)
	errs := make([]error, 8)
	for i := range infos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			infos[i], errs[i] = c.EnsureGossipKey(ctx, GossipKeyRequest{Path: p})
		}()
	}
	wg.Wait()
	generated := 0
	for i, info := range infos {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if info.KeyID != infos[0].KeyID || !strings.HasPrefix(info.KeyID, "sha256:") || len(info.KeyID) != len("sha256:")+16 {
			t.Fatalf("key IDs differ or malformed: %+v vs %+v", info, infos[0])
		}
		if info.Generated {
			generated++
		}
	}
	if generated != 1 {
		t.Errorf("%d callers say they generated the key", generated)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(data))
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 32 {
		t.Fatalf("key file holds %q (%v)", data, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(filepath.Dir(p)); fi.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode %v", fi.Mode().Perm())
	}
	out, _ := json.Marshal(infos)
	if strings.Contains(string(out), key) {
		t.Fatalf("the result carries the key: %s", out)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*tmp*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// Again: the same key, not generated; a loose mode is tightened.
	os.Chmod(p, 0o644)
	again, err := c.EnsureGossipKey(ctx, GossipKeyRequest{Path: p})
	if err != nil || again.Generated || again.KeyID != infos[0].KeyID {
		t.Fatalf("again: %+v %v", again, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode not tightened: %v", fi.Mode().Perm())
	}

	// A key made by `consul keygen` elsewhere is taken as it is.
	own := filepath.Join(t.TempDir(), "own.key")
	writeFile(t, own, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16))+"\n"))
	if info, err := c.EnsureGossipKey(ctx, GossipKeyRequest{Path: own}); err != nil || info.Generated {
		t.Fatalf("own key: %+v %v", info, err)
	}

	// A file that is not a key: refused without quoting it.
	bad := filepath.Join(t.TempDir(), "bad.key")
	writeFile(t, bad, []byte("s3cr3t-not-base64!\n"))
	_, err = c.EnsureGossipKey(ctx, GossipKeyRequest{Path: bad})
	appErr := requireAppErr(t, err, ErrInvalidInput, false)
	if strings.Contains(appErr.Error(), "s3cr3t") || !strings.Contains(appErr.Message(), bad) {
		t.Errorf("message %q", appErr.Message())
	}
	_, err = c.EnsureGossipKey(ctx, GossipKeyRequest{Path: "relative.key"})
	requireAppErr(t, err, ErrInvalidInput, false)
}

// TestConfigureConsulOverSSH writes the agent configuration through a loopback
// sshd: written once with the key, mode 0640, left alone when unchanged, rewritten
// when a setting changes; the key never in a result or an error.
func TestConfigureConsulOverSSH(t *testing.T) {
	s := sshtest.New(t, 1)
	c := consulForTest(t)
	ctx := context.Background()
	h := s.Host(0)
	keyFile := filepath.Join(t.TempDir(), "gossip.key")
	info, err := c.EnsureGossipKey(ctx, GossipKeyRequest{Path: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	keyData, _ := os.ReadFile(keyFile)
	key := strings.TrimSpace(string(keyData))
	req := ConsulConfigRequest{Host: h, Server: true, Datacenter: "dc1", BootstrapExpect: 3,
		RetryJoin: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, GossipKeyFile: keyFile, KeyID: info.KeyID}

	res, err := c.ConfigureConsul(ctx, req)
	if err != nil || !res.Changed || res.BindAddr != h.Address || res.Path != filepath.Join(c.configDir, ConsulConfigFile) {
		t.Fatalf("first: %+v %v", res, err)
	}
	out, _ := json.Marshal(res)
	if strings.Contains(string(out), key) {
		t.Fatalf("result carries the key: %s", out)
	}
	b, err := os.ReadFile(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	want := map[string]any{"datacenter": "dc1", "node_name": "host0", "data_dir": c.dataDir, "server": true, "bootstrap_expect": 3.0,
		"bind_addr": h.Address, "client_addr": "127.0.0.1", "retry_join": []any{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, "encrypt": key}
	for k, v := range want {
		if fmt.Sprint(cfg[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %v, want %v", k, cfg[k], v)
		}
	}
	fi, _ := os.Stat(res.Path)
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	if d, err := os.Stat(c.dataDir); err != nil || d.Mode().Perm() != 0o750 {
		t.Errorf("data dir: %v %v", d, err)
	}
	noTempFiles(t, c.configDir)

	// Unchanged: nothing written.
	res, err = c.ConfigureConsul(ctx, req)
	if err != nil || res.Changed {
		t.Fatalf("second: %+v %v", res, err)
	}
	if fi2, _ := os.Stat(res.Path); !os.SameFile(fi, fi2) || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Error("configuration rewritten although unchanged")
	}
	// A mode changed by hand is put back, and counts as a change.
	os.Chmod(res.Path, 0o644)
	if res, err = c.ConfigureConsul(ctx, req); err != nil || !res.Changed {
		t.Fatalf("mode fix: %+v %v", res, err)
	}

	// A client bound to an interface: a go-sockaddr template, no bootstrap_expect.
	client := req
	client.Server, client.BootstrapExpect, client.BindInterface = false, 0, "lo"
	res, err = c.ConfigureConsul(ctx, client)
	if err != nil || !res.Changed || res.BindAddr != `{{ GetInterfaceIP "lo" }}` {
		t.Fatalf("client: %+v %v", res, err)
	}
	b, _ = os.ReadFile(res.Path)
	if strings.Contains(string(b), "bootstrap_expect") || !strings.Contains(string(b), `"server": false`) || !strings.Contains(string(b), `GetInterfaceIP \"lo\"`) {
		t.Errorf("client config:\n%s", b)
	}

	// The key file replaced since the run started: refused, the key not shown.
	other := filepath.Join(t.TempDir(), "other.key")
	if _, err := c.EnsureGossipKey(ctx, GossipKeyRequest{Path: other}); err != nil {
		t.Fatal(err)
	}
	bad := req
	bad.GossipKeyFile = other
	_, err = c.ConfigureConsul(ctx, bad)
	appErr := requireAppErr(t, err, ErrGossipKeyMismatch, false)
	otherKey, _ := os.ReadFile(other)
	if strings.Contains(appErr.Error(), strings.TrimSpace(string(otherKey))) || strings.Contains(appErr.Error(), key) {
		t.Fatalf("error shows a key: %v", appErr)
	}
	if b2, _ := os.ReadFile(res.Path); !bytes.Equal(b, b2) {
		t.Error("configuration written despite the mismatch")
	}
}

// fakeConsulBinary writes a shell script that answers `consul version`.
func fakeConsulBinary(t *testing.T, dir, version string) (string, []byte) {
	t.Helper()
	content := []byte("#!/bin/sh\n# fake consul for clusterflow's tests\necho \"Consul v" + version + "\"\necho 'Revision 0'\n")
	return writeFile(t, filepath.Join(dir, "consul"), content), content
}

func TestInstallConsulFromFileOverSSH(t *testing.T) {
	s := sshtest.New(t, 1)
	c := consulForTest(t)
	ctx := context.Background()
	h := s.Host(0)
	bin, content := fakeConsulBinary(t, t.TempDir(), "1.22.7")
	req := InstallConsulRequest{Host: h, Source: playbooks.ConsulFromFile, Binary: bin, SHA256: sum(content)}

	res, err := c.InstallConsul(ctx, req)
	dest := filepath.Join(c.binDir, "consul")
	if err != nil || !res.Changed || res.Path != dest || res.Version != "1.22.7" || !strings.HasPrefix(res.Message, "installed consul 1.22.7 (file consul, 0.0 MiB, SHA-256 ") {
		t.Fatalf("first: %+v %v", res, err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, content) {
		t.Fatal("binary not copied")
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	noTempFiles(t, c.binDir)
	res, err = c.InstallConsul(ctx, req)
	if err != nil || res.Changed || res.Message != "consul 1.22.7 already installed" {
		t.Fatalf("second: %+v %v", res, err)
	}

	// A binary that is not the one the playbook names is refused before sending.
	_, err = c.InstallConsul(ctx, InstallConsulRequest{Host: h, Binary: bin, SHA256: strings.Repeat("0", 64)})
	appErr := requireAppErr(t, err, ErrInvalidInput, false)
	// The file's own sum is never shown (a playbook must not learn it).
	if !strings.Contains(appErr.Message(), "does not have the SHA-256 the playbook gives") || strings.Contains(appErr.Message(), sum(content)) {
		t.Errorf("message %q", appErr.Message())
	}
	_, err = c.InstallConsul(ctx, InstallConsulRequest{Host: h, Binary: filepath.Join(t.TempDir(), "nope"), SHA256: sum(content)})
	requireAppErr(t, err, ErrInvalidInput, false)

	// A binary that does not run on the host.
	broken := writeFile(t, filepath.Join(t.TempDir(), "consul"), []byte("#!/bin/sh\nexit 126\n"))
	b, _ := os.ReadFile(broken)
	_, err = c.InstallConsul(ctx, InstallConsulRequest{Host: h, Binary: broken, SHA256: sum(b)})
	requireAppErr(t, err, ErrRemoteFailed, false)
}

// zipOf returns a zip archive holding the named files.
func zipOf(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, data := range files {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestInstallConsulFromURLOverSSH(t *testing.T) {
	if _, err := exec.LookPath("unzip"); err != nil {
		if _, err := exec.LookPath("python3"); err != nil {
			t.Skip("neither unzip nor python3 on this machine")
		}
	}
	s := sshtest.New(t, 1)
	c := consulForTest(t)
	ctx := context.Background()
	h := s.Host(0)
	_, content := fakeConsulBinary(t, t.TempDir(), "1.22.7")
	archive := zipOf(t, map[string][]byte{"consul": content, "LICENSE.txt": []byte("MPL")})
	noConsul := zipOf(t, map[string][]byte{"README": []byte("x")})
	var downloads atomic.Int32
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		downloads.Add(1)
		switch r.URL.Path {
		case "/consul/1.22.7/consul_1.22.7_linux_amd64.zip":
			w.Write(archive)
		case "/empty.zip":
			w.Write(noConsul)
		default:
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	base := "http://" + l.Addr().String()
	req := InstallConsulRequest{Host: h, Source: playbooks.ConsulFromURL, URL: base + "/consul/1.22.7/consul_1.22.7_linux_amd64.zip", SHA256: sum(archive)}

	res, err := c.InstallConsul(ctx, req)
	if err != nil || !res.Changed || res.Version != "1.22.7" || res.Message != "installed consul 1.22.7 (url consul_1.22.7_linux_amd64.zip)" {
		t.Fatalf("first: %+v %v", res, err)
	}
	if got, _ := os.ReadFile(filepath.Join(c.binDir, "consul")); !bytes.Equal(got, content) {
		t.Fatal("binary not unpacked")
	}
	res, err = c.InstallConsul(ctx, req)
	if err != nil || res.Changed || downloads.Load() != 1 {
		t.Fatalf("second: %+v %v (downloads %d)", res, err, downloads.Load())
	}
	// The binary replaced by hand: installed again.
	writeFile(t, filepath.Join(c.binDir, "consul"), []byte("#!/bin/sh\necho Consul v0.0.1\n"))
	if res, err = c.InstallConsul(ctx, req); err != nil || !res.Changed || res.Version != "1.22.7" {
		t.Fatalf("repair: %+v %v", res, err)
	}

	wrong := req
	wrong.SHA256 = strings.Repeat("1", 64)
	_, err = c.InstallConsul(ctx, wrong)
	requireAppErr(t, err, ErrChecksumMismatch, true)
	missing := req // (a new SHA-256: the same one would find the work done, whatever the URL)
	missing.URL, missing.SHA256 = base+"/nope.zip", strings.Repeat("2", 64)
	_, err = c.InstallConsul(ctx, missing)
	requireAppErr(t, err, ErrConsulDownloadFailed, true)
	empty := InstallConsulRequest{Host: h, Source: playbooks.ConsulFromURL, URL: base + "/empty.zip", SHA256: sum(noConsul)}
	_, err = c.InstallConsul(ctx, empty)
	requireAppErr(t, err, ErrRemoteFailed, false)
}

// fakeAgent serves the three endpoints VerifyConsul reads; its answers can change
// while the test runs.
type fakeAgent struct {
	mu      sync.Mutex
	leader  string
	peers   []string
	members []map[string]any
	hits    atomic.Int32
}

func (a *fakeAgent) set(leader string, peers []string, members ...map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.leader, a.peers, a.members = leader, peers, members
}

func (a *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.hits.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	var v any
	switch r.URL.Path {
	case "/v1/status/leader":
		v = a.leader
	case "/v1/status/peers":
		v = a.peers
	case "/v1/agent/members":
		v = a.members
	default:
		http.NotFound(w, r)
		return
	}
	json.NewEncoder(w).Encode(v)
}

func member(name, addr string, server bool, status int) map[string]any {
	tags := map[string]string{"role": "node"}
	if server {
		tags = map[string]string{"role": "consul", "port": "8300"}
	}
	return map[string]any{"Name": name, "Addr": addr, "Port": 8301, "Status": status, "Tags": tags}
}

// TestVerifyConsulThroughSSH reads a fake agent's API through the host's SSH
// connection (a direct-tcpip channel to 127.0.0.1): it waits until a leader is
// elected and the members are alive, and fails, naming the problem, when the
// cluster does not get there in time.
func TestVerifyConsulThroughSSH(t *testing.T) {
	s := sshtest.New(t, 1)
	c := consulForTest(t)
	c.pollEvery = 50 * time.Millisecond
	agent := &fakeAgent{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: agent}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c.httpAddr = l.Addr().String()
	ctx := context.Background()
	req := VerifyConsulRequest{Host: s.Host(0), Servers: []string{"master", "slave01"}, Clients: []string{"slave02"}}

	// No leader yet, then elected.
	agent.set("", nil, member("master", "10.0.0.1", true, 1), member("slave01", "10.0.0.2", true, 1), member("slave02", "10.0.0.3", false, 1))
	time.AfterFunc(300*time.Millisecond, func() {
		agent.set("10.0.0.2:8300", []string{"10.0.0.2:8300", "10.0.0.1:8300"},
			member("slave02", "10.0.0.3", false, 1), member("master", "10.0.0.1", true, 1), member("slave01", "10.0.0.2", true, 1))
	})
	st, err := c.VerifyConsul(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if st.Leader != "10.0.0.2:8300" || !slices.Equal(st.Peers, []string{"10.0.0.1:8300", "10.0.0.2:8300"}) || st.WaitedMs < 200 {
		t.Errorf("state %+v", st)
	}
	if len(st.Members) != 3 || st.Members[0] != (ConsulMember{Name: "master", Addr: "10.0.0.1", Role: "server", Status: "alive"}) || st.Members[2].Role != "client" {
		t.Errorf("members %+v", st.Members)
	}

	// A failed member and a missing peer: not as expected, said so.
	c.verifyTimeout = 500 * time.Millisecond
	agent.set("10.0.0.1:8300", []string{"10.0.0.1:8300"}, member("master", "10.0.0.1", true, 1), member("slave01", "10.0.0.2", true, 4))
	_, err = c.VerifyConsul(ctx, req)
	appErr := requireAppErr(t, err, ErrConsulNotReady, true)
	for _, want := range []string{"member slave01 (10.0.0.2) is failed", "not members yet: slave02"} {
		if !strings.Contains(appErr.Message(), want) {
			t.Errorf("message %q lacks %q", appErr.Message(), want)
		}
	}
	agent.set("10.0.0.1:8300", []string{"10.0.0.1:8300"}, member("master", "10.0.0.1", true, 1), member("slave01", "10.0.0.2", true, 1), member("slave02", "10.0.0.3", false, 1))
	_, err = c.VerifyConsul(ctx, req)
	appErr = requireAppErr(t, err, ErrConsulNotReady, true)
	if !strings.Contains(appErr.Message(), "Raft peers are [10.0.0.1:8300], want [10.0.0.1:8300 10.0.0.2:8300]") {
		t.Errorf("message %q", appErr.Message())
	}

	// No agent listening: waits, then says the agent does not answer.
	srv.Close()
	_, err = c.VerifyConsul(ctx, req)
	appErr = requireAppErr(t, err, ErrConsulNotReady, true)
	if !strings.Contains(appErr.Message(), "the agent does not answer") {
		t.Errorf("message %q", appErr.Message())
	}
}
