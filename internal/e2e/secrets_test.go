//go:build integration || lab

package e2e

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/clusterflow/clusterflow/internal/codec"
)

// secretPatterns are what may never appear in a history, whatever the run: PEM
// private key blocks and Docker swarm join tokens.
var secretPatterns = map[string]string{
	"private key material": "PRIVATE KEY-----",
	"swarm join token":     "SWMTKN-",
}

// scanHistories reads every event of every run whose workflow ID starts with prefix
// ("" for every run in the server: the playbook runs, their children and leases),
// and fails on any of the secrets, or any of secretPatterns, found in an event: in
// its binary form (payload bytes as they are), its JSON form (every string field),
// and in its payloads decoded with the codec keyring of this process's environment
// (codec.KeysEnv) when one is set, so that an encrypted history is checked in the
// clear too. It returns the number of events read.
func scanHistories(t *testing.T, c *cluster, prefix string, secrets map[string]string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for what, s := range secrets {
		if len(s) < 16 {
			t.Fatalf("%s %q is too short to scan for", what, s)
		}
	}
	var cdc *codec.Codec
	if keys := os.Getenv(codec.KeysEnv); keys != "" {
		k, err := codec.ParseKeys(keys)
		if err != nil {
			t.Fatal(err)
		}
		cdc = codec.New(k)
	}
	var ids [][2]string
	var token []byte
	for {
		resp, err := c.client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{NextPageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.GetExecutions() {
			ids = append(ids, [2]string{e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId()})
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	runs, events, payloads, decoded := 0, 0, 0, 0
	for _, e := range ids {
		id, runID := e[0], e[1]
		if !strings.HasPrefix(id, prefix) {
			continue
		}
		runs++
		h := c.client.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for h.HasNext() {
			ev, err := h.Next()
			if err != nil {
				t.Fatal(err)
			}
			events++
			raw, _ := proto.Marshal(ev)
			text, _ := protojson.Marshal(ev)
			forms := [][]byte{raw, text}
			for _, p := range eventPayloads(ev) {
				payloads++
				if cdc == nil || !codec.Encrypted(p) {
					continue
				}
				clear, err := cdc.Decode([]*commonpb.Payload{p})
				if err != nil {
					t.Errorf("event %d of %s: %v", ev.GetEventId(), id, err)
					continue
				}
				decoded++
				forms = append(forms, clear[0].GetData())
			}
			for _, form := range forms {
				for what, s := range secrets {
					if bytes.Contains(form, []byte(s)) {
						t.Errorf("the %s appears in event %d of %s", what, ev.GetEventId(), id)
					}
				}
				for what, s := range secretPatterns {
					if bytes.Contains(form, []byte(s)) {
						t.Errorf("%s (%q) appears in event %d of %s", what, s, ev.GetEventId(), id)
					}
				}
			}
		}
	}
	if cdc != nil && decoded == 0 && payloads > 0 {
		t.Errorf("the codec is on but no payload decoded: is the scan blind?")
	}
	t.Logf("secrets scan: %d runs, %d events, %d payloads (%d decoded with the codec keyring); %d secrets and %d patterns looked for",
		runs, events, payloads, decoded, len(secrets), len(secretPatterns))
	return events
}

// eventPayloads returns every payload an event carries, search attributes aside:
// the server indexes those, so no codec sees them.
func eventPayloads(e *historypb.HistoryEvent) []*commonpb.Payload {
	var out []*commonpb.Payload
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		switch m.Descriptor().FullName() {
		case "temporal.api.common.v1.Payload":
			out = append(out, m.Interface().(*commonpb.Payload))
			return
		case "temporal.api.common.v1.SearchAttributes":
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message())
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(mv.Message())
					return true
				})
			case fd.Message() != nil && !fd.IsMap():
				walk(v.Message())
			}
			return true
		})
	}
	walk(e.ProtoReflect())
	return out
}
