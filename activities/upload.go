package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/rules"
	"github.com/clusterflow/clusterflow/internal/workerfs"
	"github.com/clusterflow/clusterflow/playbooks"
)

// Files copies files to hosts. Its exported methods are activities.
type Files struct {
	rem            typedRemote
	heartbeatEvery time.Duration
}

// NewFiles returns the file activities, reaching hosts through r.
func NewFiles(r remote.Remote) *Files {
	return &Files{rem: typedRemote{r}, heartbeatEvery: defaultHeartbeat}
}

// UploadRequest is the input of UploadFile: one upload step on one host.
//
// With Template set, Src is a Go text/template rendered on the worker with:
//
//	{{ .Host.Name }}      the inventory name of the target host
//	{{ .Host.Address }}   its address
//	{{ .Host.Groups }}    its groups, a list: {{ range .Host.Groups }}{{ . }} {{ end }}
//	{{ .Vars.key }}       playbook variable "key" (a missing key is an error)
//
// Templates never see key material or other hosts.
type UploadRequest struct {
	Host     remote.Host       `json:"host"`
	Src      string            `json:"src"` // absolute path on the worker
	Template bool              `json:"template,omitempty"`
	Vars     map[string]string `json:"vars,omitempty"`
	Dest     string            `json:"dest"`            // absolute path on the host
	Mode     uint32            `json:"mode"`            // permission bits; 0 means 0644
	Owner    string            `json:"owner,omitempty"` // user name or uid; empty: the login user (new files)
	Group    string            `json:"group,omitempty"` // group name or gid; empty: the default group
}

// UploadResult says whether the host's file changed and what it now holds.
type UploadResult struct {
	Changed bool   `json:"changed"`
	SHA256  string `json:"sha256"` // hex, of the content as uploaded (after rendering)
	Bytes   int64  `json:"bytes"`
}

// UploadProgress is the heartbeat detail of UploadFile.
type UploadProgress struct {
	Phase      string `json:"phase"` // "check" or "upload" (verified as it is written)
	BytesDone  int64  `json:"bytesDone"`
	BytesTotal int64  `json:"bytesTotal"`
}

// defaultUploadMode applies when UploadRequest.Mode is 0.
const defaultUploadMode = 0o644

// UploadFile makes req.Dest on the host hold req.Src (rendered when a template) with
// the requested mode and ownership. It compares checksums first and sends nothing
// when the content is already there (a file of another size is not compared, and
// the source is hashed first only when the host has one of the same size). New
// content is written to a temporary file in the destination directory and renamed
// over Dest, so readers see the old file or the new one, never a partial one: the
// worker hashes the source while it sends it, the host hashes what it writes in the
// same pass, and the rename waits for both checksums to agree. Many hosts receive
// at once as the step's parallelism allows, each over its own pooled connection.
func (f *Files) UploadFile(ctx context.Context, req UploadRequest) (UploadResult, error) {
	h := req.Host
	mode := req.Mode
	if mode == 0 {
		mode = defaultUploadMode
	}
	switch {
	case !filepath.IsAbs(req.Src):
		return UploadResult{}, hostInvalid(h, "upload src %q must be an absolute path on the worker", req.Src)
	case !path.IsAbs(req.Dest) || strings.HasSuffix(req.Dest, "/") || path.Clean(req.Dest) != req.Dest:
		return UploadResult{}, hostInvalid(h, "upload dest %q must be a clean absolute file path on the host", req.Dest)
	case mode > 0o7777:
		return UploadResult{}, hostInvalid(h, "upload mode %o has bits beyond 07777", mode)
	case strings.ContainsAny(req.Owner+req.Group, ": \t\n\x00"):
		return UploadResult{}, hostInvalid(h, "upload owner %q or group %q is not a plain user or group name", req.Owner, req.Group)
	}

	src, err := openLocal(f.rem, req)
	if err != nil {
		return UploadResult{}, err
	}
	res := UploadResult{Bytes: src.size}
	prog := &uploadProgress{total: src.size}
	defer heartbeats(ctx, f.heartbeatEvery, func() any { return prog.snapshot() })()
	want := wantFile{path: req.Dest, src: src.content, size: src.size, sum: src.sum,
		attrs: remote.Attrs{Mode: mode, Owner: req.Owner, Group: req.Group}}
	res.Changed, _, res.SHA256, err = ensureContent(ctx, f.rem, h, want, prog.setPhase, &prog.done)
	if err != nil {
		return UploadResult{}, err
	}
	return res, nil
}

// localContent is the upload's content: a rendered template in memory (sum set), or
// the source file, streamed (sum empty: hashed as it is sent).
type localContent struct {
	content remote.Content
	size    int64
	sum     string
}

// templateData is what upload templates see; see UploadRequest.
type templateData struct {
	Host templateHost
	Vars map[string]string
}

type templateHost struct {
	Name    string
	Address string
	Groups  []string
}

// maxTemplateSize bounds a template source: templates are rendered in memory.
const maxTemplateSize = 16 << 20

func openLocal(rem typedRemote, req UploadRequest) (*localContent, error) {
	h := req.Host
	if !rules.WorkerPath(req.Src) {
		return nil, hostInvalid(h, "upload src %q must be %s", req.Src, rules.WorkerPathRule)
	}
	if err := rem.workerFile("upload src", req.Src, workerfs.Content); err != nil {
		return nil, err
	}
	fi, err := os.Stat(req.Src)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, hostInvalid(h, "upload src %s does not exist on this worker", req.Src)
	case err != nil:
		return nil, hostInvalid(h, "upload src: %v", err)
	case !fi.Mode().IsRegular():
		return nil, hostInvalid(h, "upload src %s is not a regular file", req.Src)
	}
	if !req.Template {
		// Not hashed here: the transfer hashes it as it reads it (see ensureContent).
		return &localContent{content: remote.Content{Path: req.Src}, size: fi.Size()}, nil
	}

	if fi.Size() > maxTemplateSize {
		return nil, hostInvalid(h, "template %s is larger than %d MiB", req.Src, maxTemplateSize>>20)
	}
	text, err := os.ReadFile(req.Src)
	if err != nil {
		return nil, hostInvalid(h, "upload src: %v", err)
	}
	// Parsed as the playbook parser does: loops that could run without bound are refused.
	tmpl, err := playbooks.NewTemplate(filepath.Base(req.Src), string(text))
	if err != nil {
		return nil, hostInvalid(h, "template %s: %v", req.Src, err)
	}
	vars := req.Vars
	if vars == nil {
		vars = map[string]string{}
	}
	data := templateData{
		Host: templateHost{Name: h.Name, Address: h.Address, Groups: h.Groups},
		Vars: vars,
	}
	if err := playbooks.CheckTemplateData(tmpl, max(len(vars), len(h.Groups))); err != nil {
		return nil, hostInvalid(h, "template %s: %v", req.Src, err)
	}
	out, err := playbooks.RenderTemplateBytes(tmpl, data, playbooks.MaxTemplateOutput, playbooks.TemplateBudget)
	if err != nil {
		return nil, hostInvalid(h, "template %s: %v", req.Src, err)
	}
	sum := sha256.Sum256(out)
	return &localContent{content: remote.Content{Data: out}, size: int64(len(out)), sum: hex.EncodeToString(sum[:])}, nil
}

// uploadProgress is shared between the transfer and the heartbeat goroutine.
type uploadProgress struct {
	phase atomic.Value // string
	done  atomic.Int64
	total int64
}

func (p *uploadProgress) setPhase(s string) { p.phase.Store(s) }

func (p *uploadProgress) snapshot() UploadProgress {
	phase, _ := p.phase.Load().(string)
	return UploadProgress{Phase: phase, BytesDone: p.done.Load(), BytesTotal: p.total}
}
