//go:build integration

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/clusterflow/clusterflow/internal/codec"
	"github.com/clusterflow/clusterflow/workflows"
)

// TestCodecEncryptsHistory switches the codec on for the server, worker and starter
// (keys in the environment), runs a playbook, and reads its history as someone with
// access to Temporal but not to the keys would: every payload is encrypted and holds
// neither the playbook's name nor its command. With the keys, the payloads decode,
// and so does the codec endpoint the embedded Web UI is pointed at.
func TestCodecEncryptsHistory(t *testing.T) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	keys := "e2e-1 " + base64.StdEncoding.EncodeToString(key)
	codecAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	t.Setenv(codec.KeysEnv, keys) // the server, workers and starters all inherit it
	t.Setenv("CLUSTERFLOW_CODEC_ADDRESS", codecAddr)
	c, uiURL := newClusterWithUI(t, 1)
	c.startWorker()

	const name, marker = "e2e-codec-secret", "marker-7f3a9c"
	pb := c.playbook(name, `    - name: say
      kind: run
      hosts: all-hosts
      command: [echo, `+marker+`]
`)
	out, code := c.starter("run", pb)
	if code != 0 || !strings.Contains(out, name+" completed") {
		t.Fatalf("starter run exit %d:\n%s", code, out)
	}
	id := workflows.WorkflowID(name)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Step 1. Without the keys: every payload is sealed.
	var payloads []*commonpb.Payload
	it := c.client.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range eventPayloads(e) {
			if !codec.Encrypted(p) {
				t.Errorf("event %d (%s): payload not encrypted: %v", e.GetEventId(), e.GetEventType(), p.GetMetadata())
			}
			for _, clear := range []string{name, marker} {
				if bytes.Contains(p.GetData(), []byte(clear)) {
					t.Errorf("event %d (%s): %q in clear", e.GetEventId(), e.GetEventType(), clear)
				}
			}
			payloads = append(payloads, p)
		}
	}
	t.Logf("%d payloads, all encrypted", len(payloads))
	if len(payloads) < 4 { // workflow input and result, activity inputs and results
		t.Fatalf("history of %s holds %d payloads", id, len(payloads))
	}
	var res workflows.Progress
	if err := c.client.GetWorkflow(ctx, id, "").Get(ctx, &res); err == nil {
		t.Fatalf("the result decoded without the keys: %+v", res)
	}

	// Step 2. With the keys: they decode.
	keyring, err := codec.ParseKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	cdc := codec.New(keyring)
	decoded, err := cdc.Decode(payloads)
	if err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	for _, p := range decoded {
		all.Write(p.GetData())
	}
	if !strings.Contains(all.String(), name) || !strings.Contains(all.String(), marker) {
		t.Errorf("decoded payloads lack the playbook name or its command")
	}
	withKeys, err := client.Dial(client.Options{HostPort: c.addr, DataConverter: cdc.DataConverter(), FailureConverter: cdc.FailureConverter()})
	if err != nil {
		t.Fatal(err)
	}
	defer withKeys.Close()
	if err := withKeys.GetWorkflow(ctx, id, "").Get(ctx, &res); err != nil || res.Playbook != name || res.Outcome == "" {
		t.Fatalf("result with the keys: %v %+v", err, res)
	}

	// Step 3. A failing run: its failure messages (which quote the command's output)
	// are encrypted too, and nothing else in the events quotes the command.
	failing := c.playbook("e2e-codec-fails", `    - name: fail
      kind: run
      hosts: all-hosts
      command: [sh, -c, 'echo `+marker+`-out; exit 3']
`)
	if out, code := c.starter("run", failing); code == 0 {
		t.Fatalf("a failing playbook exits 0:\n%s", out)
	}
	failID := workflows.WorkflowID("e2e-codec-fails")
	it = c.client.GetWorkflowHistory(ctx, failID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if text, _ := protojson.Marshal(e); strings.Contains(string(text), marker) {
			t.Errorf("event %d (%s) quotes the command in clear: %s", e.GetEventId(), e.GetEventType(), text)
		}
	}
	if err := withKeys.GetWorkflow(ctx, failID, "").Get(ctx, nil); err == nil || !strings.Contains(err.Error(), marker) {
		t.Errorf("the failure read with the keys does not quote the output: %v", err)
	}

	// Step 4. The embedded Web UI decodes through the server process's endpoint.
	var settings struct{ Codec struct{ Endpoint string } }
	getJSON(t, uiURL+"/api/v1/settings", &settings)
	if settings.Codec.Endpoint != "http://"+codecAddr {
		t.Fatalf("Web UI codec endpoint %q, want http://%s", settings.Codec.Endpoint, codecAddr)
	}
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: payloads[:1]})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, settings.Codec.Endpoint+"/decode", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Namespace", "default")
	req.Header.Set("Origin", uiURL) // as the browser sends it
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != uiURL {
		t.Fatalf("POST /decode: %s %v\n%s", resp.Status, resp.Header, answer)
	}
	var got commonpb.Payloads
	if err := protojson.Unmarshal(answer, &got); err != nil {
		t.Fatalf("POST /decode answer %s: %v", answer, err)
	}
	if len(got.Payloads) != 1 || codec.Encrypted(got.Payloads[0]) || !proto.Equal(got.Payloads[0], decoded[0]) {
		t.Fatalf("POST /decode gave %v, want %v", got.Payloads, decoded[0])
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
