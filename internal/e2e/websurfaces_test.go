//go:build integration

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/clusterflow/clusterflow/internal/codec"
	"github.com/clusterflow/clusterflow/workflows"
)

// refusal is one hostile request to a web surface and what it must get.
type refusal struct {
	name   string
	method string
	url    string
	header map[string]string // "Host" sets the Host header
	body   string
	status int    // expected status
	says   string // expected in the answer
}

// do sends r and checks its status and answer, logging a row of the refusal table.
func (r refusal) do(t *testing.T) {
	t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, r.url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.header {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", r.name, err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	msg := strings.Join(strings.Fields(string(answer)), " ")
	if len(msg) > 110 {
		msg = msg[:110] + "..."
	}
	t.Logf("| %s | %d | %d %s |", r.name, r.status, resp.StatusCode, msg)
	if resp.StatusCode != r.status || !strings.Contains(string(answer), r.says) {
		t.Errorf("%s: %s %s: got %s %s, want %d with %q", r.name, r.method, r.url, resp.Status, answer, r.status, r.says)
	}
}

// startRequest is the HTTP API's StartWorkflowExecution body (as the UI's API and the
// frontend's HTTP API take it) for a run on a task queue nobody polls.
func startRequest(id string) string {
	return fmt.Sprintf(`{"workflowId":%q,"workflowType":{"name":%q},"taskQueue":{"name":"e2e-nobody-polls"},"identity":"e2e"}`,
		id, workflows.RunPlaybookName)
}

// noRun fails the test when a run with this ID exists: the refused request started
// nothing.
func noRun(t *testing.T, c client.Client, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.DescribeWorkflowExecution(ctx, id, "")
	var nf *serviceerror.NotFound
	if !errors.As(err, &nf) {
		t.Errorf("run %s: %v, want not found: a refused request started it", id, err)
	}
}

// TestWebUIRefusesForeignPages runs one embedded server process (Web UI, codec
// endpoint on 0.0.0.0, profiler on loopback, state directory made 0755 beforehand,
// HTTP API left at its default) and sends it what a hostile page, a DNS rebinding
// page or another machine would: each is refused and starts nothing. Then a worker
// with metrics polls a run of a type it does not know, which shows up as "other".
func TestWebUIRefusesForeignPages(t *testing.T) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	keys := "web-1 " + base64.StdEncoding.EncodeToString(key)
	codecPort, pprofPort := freePort(t), freePort(t)
	pprofAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(pprofPort))
	// The server's state directory exists already, open to all (as the lab leaves it).
	stateParent := t.TempDir()
	c, uiURL := newClusterWithUIEnv(t, 0, []string{
		codec.KeysEnv + "=" + keys,
		"CLUSTERFLOW_CODEC_ADDRESS=0.0.0.0:" + strconv.Itoa(codecPort),
		"CLUSTERFLOW_PPROF_ADDRESS=" + pprofAddr,
	}, "--state-dir", prepareState(t, stateParent))
	server := c.procs[0]
	uiHost := strings.TrimPrefix(uiURL, "http://")
	uiPort := uiHost[strings.LastIndexByte(uiHost, ':')+1:]
	foreign := "rebind.attacker.example:" + uiPort
	start := uiURL + "/api/v1/namespaces/default/workflows/"

	t.Run("state directory private", func(t *testing.T) {
		state := filepath.Join(stateParent, "state")
		for path, want := range map[string]os.FileMode{state: 0o700, filepath.Join(state, "temporal.db"): 0o600} {
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %04o", path, info.Mode().Perm())
			if info.Mode().Perm() != want {
				t.Errorf("%s: mode %04o, want %04o", path, info.Mode().Perm(), want)
			}
		}
	})

	t.Run("Web UI", func(t *testing.T) {
		for _, r := range []refusal{
			{name: "GET / with a foreign Host (DNS rebinding)", method: "GET", url: uiURL + "/",
				header: map[string]string{"Host": foreign}, status: 403, says: "not a name this server answers to"},
			{name: "GET /api/v1/namespaces with a foreign Host", method: "GET", url: uiURL + "/api/v1/namespaces",
				header: map[string]string{"Host": foreign}, status: 403, says: "--ui-hosts"},
			{name: "GET / with Host 127.0.0.1.attacker.example", method: "GET", url: uiURL + "/",
				header: map[string]string{"Host": "127.0.0.1.attacker.example:" + uiPort}, status: 403, says: "not a name"},
			{name: "POST start, foreign Host, same-origin (rebinding)", method: "POST", url: start + "web-rebind",
				header: map[string]string{"Host": foreign, "Origin": "http://" + foreign, "Sec-Fetch-Site": "same-origin",
					"Content-Type": "application/json"}, body: startRequest("web-rebind"), status: 403, says: "not a name"},
			{name: "POST start, cross-site text/plain", method: "POST", url: start + "web-cross",
				header: map[string]string{"Origin": "http://attacker.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
				body:   startRequest("web-cross"), status: 403, says: "cross-site request blocked by CSRF"},
			{name: "POST start, cross-origin text/plain, no Sec-Fetch-Site", method: "POST", url: start + "web-old",
				header: map[string]string{"Origin": "http://attacker.example", "Content-Type": "text/plain"},
				body:   startRequest("web-old"), status: 400, says: "missing csrf token"},
			{name: "POST start, cross-site with a stolen-looking token", method: "POST", url: start + "web-token",
				header: map[string]string{"Origin": "http://attacker.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "application/json",
					"X-CSRF-Token": "0123456789abcdef0123456789abcdef", "Cookie": "_csrf=0123456789abcdef0123456789abcdef"},
				body: startRequest("web-token"), status: 403, says: "cross-site request blocked"},
			{name: "POST start, form body, no Origin", method: "POST", url: start + "web-form",
				header: map[string]string{"Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": "0123456789abcdef0123456789abcdef",
					"Cookie": "_csrf=0123456789abcdef0123456789abcdef"},
				body: startRequest("web-form"), status: 403, says: "must be application/json"},
		} {
			r.do(t)
		}
		for _, id := range []string{"web-rebind", "web-cross", "web-old", "web-token", "web-form"} {
			noRun(t, c.client, id)
		}
		// The controls: the UI itself, as the browser loads it and starts a run from it.
		refusal{name: "control: GET / on 127.0.0.1", method: "GET", url: uiURL + "/", status: 200, says: "<html"}.do(t)
		refusal{name: "control: GET / on localhost", method: "GET", url: uiURL + "/", header: map[string]string{"Host": "localhost:" + uiPort},
			status: 200, says: "<html"}.do(t)
		refusal{name: "control: POST start from the UI's origin (text/plain, as the UI sends it)", method: "POST", url: start + "web-ok",
			header: map[string]string{"Origin": uiURL, "Sec-Fetch-Site": "same-origin", "Content-Type": "text/plain;charset=UTF-8"},
			body:   startRequest("web-ok"), status: 200, says: `"started": true`}.do(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.client.TerminateWorkflow(ctx, "web-ok", "", "e2e control"); err != nil {
			t.Errorf("the control run: %v", err)
		}
		resp, err := http.Get(uiURL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, ck := range resp.Cookies() {
			if ck.Name == "_csrf" {
				t.Logf("CSRF cookie: HttpOnly=%v, SameSite Strict: %v (the UI reads it from document.cookie)", ck.HttpOnly, ck.SameSite == http.SameSiteStrictMode)
				if ck.SameSite != http.SameSiteStrictMode {
					t.Errorf("CSRF cookie SameSite %v, want Strict", ck.SameSite)
				}
			}
		}
	})

	t.Run("HTTP API off", func(t *testing.T) {
		ports := listeningPorts(t, server.Process.Pid)
		t.Logf("the server process listens on %v (frontend %d, UI %s, codec %d, pprof %d)", ports, c.port, uiPort, codecPort, pprofPort)
		for _, p := range ports {
			if strconv.Itoa(p) == uiPort || p == codecPort || p == pprofPort {
				continue
			}
			url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/namespaces/default/workflows/http-off", p)
			req, _ := http.NewRequest("POST", url, strings.NewReader(startRequest("http-off")))
			req.Header.Set("Content-Type", "application/json")
			hc := http.Client{Timeout: 3 * time.Second}
			resp, err := hc.Do(req)
			if err == nil {
				answer, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Errorf("port %d answers the HTTP API: %s", p, answer)
				}
				t.Logf("| POST HTTP API start to port %d | no HTTP API | %s |", p, resp.Status)
			} else {
				t.Logf("| POST HTTP API start to port %d | no HTTP API | %v |", p, shortErr(err))
			}
		}
		noRun(t, c.client, "http-off")
		if strings.Contains(c.logOf(server), "HTTP API:") {
			t.Errorf("the server reports an HTTP API:\n%s", c.logOf(server))
		}
	})

	t.Run("codec endpoint on 0.0.0.0", func(t *testing.T) {
		keyring, err := codec.ParseKeys(keys)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := codec.New(keyring).Encode([]*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"x"`)}})
		if err != nil {
			t.Fatal(err)
		}
		sealed, _ := protojson.Marshal(&commonpb.Payloads{Payloads: enc})
		plain := `{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"InNlYWwgbWUi"}]}`
		endpoint := fmt.Sprintf("http://127.0.0.1:%d", codecPort)
		json := map[string]string{"Content-Type": "application/json", "X-Namespace": "default"}
		withOrigin := func(o string) map[string]string {
			return map[string]string{"Content-Type": "application/json", "X-Namespace": "default", "Origin": o}
		}
		for _, r := range []refusal{
			{name: "POST /encode, endpoint bound to 0.0.0.0", method: "POST", url: endpoint + "/encode", header: json, body: plain,
				status: 403, says: "only decodes"},
			{name: "POST /encode from the UI's origin, 0.0.0.0 bind", method: "POST", url: endpoint + "/encode", header: withOrigin(uiURL),
				body: plain, status: 403, says: "only decodes"},
			{name: "POST /decode from a foreign origin", method: "POST", url: endpoint + "/decode", header: withOrigin("http://attacker.example"),
				body: string(sealed), status: 403, says: "may not use this codec endpoint"},
			{name: "control: POST /decode from the UI's origin", method: "POST", url: endpoint + "/decode", header: withOrigin(uiURL),
				body: string(sealed), status: 200, says: `"anNvbi9wbGFpbg=="`}, // json/plain: decrypted
		} {
			r.do(t)
		}
	})

	t.Run("profiler", func(t *testing.T) {
		refusal{name: "GET /debug/pprof/cmdline with a foreign Host", method: "GET", url: "http://" + pprofAddr + "/debug/pprof/cmdline",
			header: map[string]string{"Host": "rebind.attacker.example:" + strconv.Itoa(pprofPort)}, status: 403, says: "not a name"}.do(t)
		refusal{name: "control: GET /debug/pprof/ on 127.0.0.1", method: "GET", url: "http://" + pprofAddr + "/debug/pprof/",
			status: 200, says: "goroutine"}.do(t)
		cmd := exec.Command(filepath.Join(binDir, "worker"), "server", "--grpc-port", strconv.Itoa(freePort(t)), "--ui-port", "0",
			"--state-dir", filepath.Join(t.TempDir(), "state"))
		cmd.Env = append(os.Environ(), "CLUSTERFLOW_PPROF_ADDRESS=0.0.0.0:"+strconv.Itoa(freePort(t)))
		out, err := cmd.CombinedOutput()
		t.Logf("| worker server with CLUSTERFLOW_PPROF_ADDRESS=0.0.0.0:PORT | refused at start | %v: %s |", err, strings.TrimSpace(string(out)))
		if err == nil || !strings.Contains(string(out), "loopback only") {
			t.Errorf("a profiler on 0.0.0.0: %v\n%s", err, out)
		}
	})

	t.Run("metrics labels bounded", func(t *testing.T) {
		metricsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
		w := c.startEnv("worker-metrics", []string{codec.KeysEnv + "=" + keys}, "worker", "--address", c.addr,
			"--state-dir", filepath.Join(c.dir, "worker"), "--metrics-address", metricsAddr)
		unknown := "AttackerType" + strconv.FormatInt(time.Now().UnixNano(), 36)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		run, err := c.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "metrics-unknown", TaskQueue: workflows.TaskQueue}, unknown)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.client.TerminateWorkflow(context.Background(), run.GetID(), "", "e2e") }()
		var body string
		waitFor(t, 45*time.Second, "the worker to count the unknown type's failed task", func() bool {
			resp, err := http.Get("http://" + metricsAddr + "/metrics")
			if err != nil {
				return false
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			return strings.Contains(body, `workflow_type="other"`)
		})
		if strings.Contains(body, unknown) {
			t.Errorf("the unknown workflow type %s is a label value:\n%s", unknown, linesWith(body, unknown))
		}
		t.Logf("| run of workflow type %s on task queue %s | labelled other | %s |", unknown, workflows.TaskQueue,
			strings.TrimSpace(linesWith(body, `workflow_type="other"`)))
		if t.Failed() {
			t.Logf("worker:\n%s", c.logOf(w))
		}
	})
}

// TestWebUIHTTPAPIWhenAskedFor runs the embedded server with its HTTP API turned on:
// curl's JSON is served, while what a web page can send without asking first (a
// cross-origin text/plain or form POST) and a DNS rebinding page's Host are refused.
func TestWebUIHTTPAPIWhenAskedFor(t *testing.T) {
	httpPort := freePort(t)
	c := startClusterWith(t, 0, 0, nil, "--http-port", strconv.Itoa(httpPort))
	api := fmt.Sprintf("http://127.0.0.1:%d/api/v1/namespaces/default/workflows/", httpPort)
	waitFor(t, 30*time.Second, "the HTTP API", func() bool {
		resp, err := http.Get(api)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	port := strconv.Itoa(httpPort)
	for _, r := range []refusal{
		{name: "HTTP API: POST start, cross-origin text/plain", method: "POST", url: api + "api-plain",
			header: map[string]string{"Origin": "http://attacker.example", "Content-Type": "text/plain"}, body: startRequest("api-plain"),
			status: 403, says: "requests from web pages other than the Web UI are refused"},
		{name: "HTTP API: POST start, form body, no Origin", method: "POST", url: api + "api-form",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: startRequest("api-form"),
			status: 403, says: "must be application/json"},
		{name: "HTTP API: POST start, JSON from a foreign origin", method: "POST", url: api + "api-origin",
			header: map[string]string{"Origin": "http://attacker.example", "Content-Type": "application/json"}, body: startRequest("api-origin"),
			status: 403, says: "refused"},
		{name: "HTTP API: POST start with a foreign Host (rebinding)", method: "POST", url: api + "api-host",
			header: map[string]string{"Host": "rebind.attacker.example:" + port, "Content-Type": "application/json"}, body: startRequest("api-host"),
			status: 403, says: "Host not allowed"},
		{name: "HTTP API: GET runs with Host localhost.attacker.example", method: "GET", url: api,
			header: map[string]string{"Host": "localhost.attacker.example:" + port}, status: 403, says: "Host not allowed"},
	} {
		r.do(t)
	}
	for _, id := range []string{"api-plain", "api-form", "api-origin", "api-host"} {
		noRun(t, c.client, id)
	}
	refusal{name: "control: HTTP API POST start, JSON, no Origin (curl)", method: "POST", url: api + "api-ok",
		header: map[string]string{"Content-Type": "application/json"}, body: startRequest("api-ok"), status: 200, says: `"started":true`}.do(t)
	_ = c.client.TerminateWorkflow(context.Background(), "api-ok", "", "e2e control")
}

// TestCodecServerEncodeOnLoopbackOnly runs `worker codec-server` on 0.0.0.0 and on
// 127.0.0.1: the first refuses /encode, the second serves it.
func TestCodecServerEncodeOnLoopbackOnly(t *testing.T) {
	keys := "cs-1 " + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))
	plain := `{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"InNlYWwgbWUi"}]}`
	for bind, want := range map[string]int{"0.0.0.0": 403, "127.0.0.1": 200} {
		port := strconv.Itoa(freePort(t))
		cmd := exec.Command(filepath.Join(binDir, "worker"), "codec-server", "--codec-address", bind+":"+port)
		cmd.Env = append(os.Environ(), codec.KeysEnv+"="+keys)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		url := "http://127.0.0.1:" + port
		waitFor(t, 10*time.Second, "the codec server", func() bool {
			c, err := net.Dial("tcp", "127.0.0.1:"+port)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		says := "only decodes"
		if want == 200 {
			says = `"YmluYXJ5L2VuY3J5cHRlZA=="` // binary/encrypted
		}
		refusal{name: "worker codec-server on " + bind + ": POST /encode", method: "POST", url: url + "/encode",
			header: map[string]string{"Content-Type": "application/json"}, body: plain, status: want, says: says}.do(t)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// prepareState makes dir/state as the lab leaves it (0755, before any server) and
// returns it.
func prepareState(t *testing.T, dir string) string {
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(state, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return state
}

// listeningPorts lists the TCP ports process pid listens on, from /proc.
func listeningPorts(t *testing.T, pid int) []int {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	seen := map[int]bool{}
	var ports []int
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			local := fields[1]
			p, err := strconv.ParseInt(local[strings.LastIndexByte(local, ':')+1:], 16, 32)
			if err == nil && !seen[int(p)] {
				seen[int(p)] = true
				ports = append(ports, int(p))
			}
		}
		f.Close()
	}
	if len(ports) == 0 {
		t.Fatalf("process %d listens on no TCP port", pid)
	}
	return ports
}

func linesWith(text, s string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}
