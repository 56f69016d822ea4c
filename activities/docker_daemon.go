package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// DaemonConfigRequest is the input of ConfigureDockerDaemon.
type DaemonConfigRequest struct {
	Host remote.Host `json:"host"`
	// Config holds top-level daemon.json keys: each replaces the host's value; a
	// null value removes the key. Keys not named are kept.
	Config map[string]any `json:"config,omitempty"`
}

// DaemonConfigResult says what ConfigureDockerDaemon did.
type DaemonConfigResult struct {
	Changed bool `json:"changed"`
	// Keys are the top-level keys that were added, replaced or removed. A running
	// engine needs a restart for them to take effect.
	Keys []string `json:"keys,omitempty"`
	Path string   `json:"path"`
}

// maxInlineFile is the largest file read through a command's output, which keeps
// only a 4 KiB tail; larger ones are read over SFTP.
const maxInlineFile = 3 << 10

// ConfigureDockerDaemon merges req.Config into /etc/docker/daemon.json: it reads the
// file (a missing or empty one counts as {}), replaces the named top-level keys, and
// writes the file back, atomically, only when the decoded JSON value changed.
// Formatting and key order of an untouched file are left alone. A file that is not
// a JSON object is a non-retryable ErrInvalidDaemonConfig.
func (d *Docker) ConfigureDockerDaemon(ctx context.Context, req DaemonConfigRequest) (DaemonConfigResult, error) {
	h := req.Host
	res := DaemonConfigResult{Path: d.daemonJSON}
	if len(req.Config) == 0 {
		return res, nil
	}
	op, done := d.begin(ctx, h)
	defer done()
	r, err := op.run(ctx, "read", fileReadScript.cmd(d.daemonJSON))
	if err != nil {
		return res, err
	}
	content := []byte(r.Stdout)
	word, sizeText, _ := strings.Cut(lastOutputLine(r.Stderr), " ")
	if r.ExitCode != 0 || (word != "present" && word != "absent") {
		return res, remoteFailed(h, "cannot read %s (exit %d): %s", d.daemonJSON, r.ExitCode, strings.TrimSpace(r.Stderr))
	}
	if size, _ := strconv.Atoi(strings.TrimSpace(sizeText)); size > maxInlineFile {
		if content, err = op.rem.readFile(ctx, h, d.daemonJSON, 16<<20); err != nil {
			return res, err
		}
	}
	merged, keys, err := mergeDaemonConfig(content, req.Config)
	if err != nil {
		return res, invalidDaemonConfig(h, "%s on the host: %v; fix or remove the file", d.daemonJSON, err)
	}
	if len(keys) == 0 {
		return res, nil
	}
	op.acting("write")
	r, err = op.run(ctx, "write", fileWriteScript.cmd(d.daemonJSON, string(merged)))
	if err != nil {
		return res, err
	}
	if r.ExitCode != 0 {
		return res, remoteFailed(h, "writing %s failed (exit %d): %s", d.daemonJSON, r.ExitCode, strings.TrimSpace(r.Stderr))
	}
	res.Changed, res.Keys = true, keys
	return res, nil
}

// mergeDaemonConfig merges patch into the daemon.json content current (empty means
// {}): each key of patch replaces the top-level key, a nil value removes it. It
// returns the new content, and the keys whose decoded value changed (sorted); no
// keys means the file is to be left as it is.
func mergeDaemonConfig(current []byte, patch map[string]any) ([]byte, []string, error) {
	doc := map[string]any{}
	if len(bytes.TrimSpace(current)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(current))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("not valid JSON (%v)", err)
		}
		if dec.More() {
			return nil, nil, errors.New("not valid JSON (more than one value)")
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, nil, fmt.Errorf("the JSON value is a %s, not an object", jsonKind(v))
		}
		doc = obj
	}
	keys := make([]string, 0, len(patch))
	for k := range patch {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var changed []string
	for _, k := range keys {
		want := patch[k]
		old, present := doc[k]
		switch {
		case want == nil && present:
			delete(doc, k)
			changed = append(changed, k)
		case want == nil:
		case !present || !jsonEqual(old, want):
			doc[k] = want
			changed = append(changed, k)
		}
	}
	if len(changed) == 0 {
		return nil, nil, nil
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, nil, fmt.Errorf("encoding the merged configuration: %v", err)
	}
	return out.Bytes(), changed, nil
}

// jsonEqual compares two values as JSON: 1 and 1.0 are equal, as are maps with the
// same entries.
func jsonEqual(a, b any) bool {
	norm := func(v any) (any, bool) {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, false
		}
		var out any
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, false
		}
		return out, true
	}
	na, okA := norm(a)
	nb, okB := norm(b)
	return okA && okB && reflect.DeepEqual(na, nb)
}

func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "list"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
