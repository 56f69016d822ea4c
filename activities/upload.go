package activities

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/pkg/sftp"
	"go.temporal.io/sdk/activity"

	"github.com/clusterflow/clusterflow/playbooks"
)

// Files copies files to hosts. Its exported methods are activities.
type Files struct {
	pool           *Pool
	heartbeatEvery time.Duration
}

// NewFiles returns the file activities, using pool for connections.
func NewFiles(pool *Pool) *Files {
	return &Files{pool: pool, heartbeatEvery: 5 * time.Second}
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
	Host     playbooks.Host    `json:"host"`
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
	Phase      string `json:"phase"` // "check", "upload" or "verify"
	BytesDone  int64  `json:"bytesDone"`
	BytesTotal int64  `json:"bytesTotal"`
}

// defaultUploadMode applies when UploadRequest.Mode is 0.
const defaultUploadMode = 0o644

// UploadFile makes req.Dest on the host hold req.Src (rendered when a template) with
// the requested mode and ownership. It compares checksums first and sends nothing
// when the content is already there. New content is written to a temporary file in
// the destination directory and renamed over Dest, so readers see the old file or
// the new one, never a partial one; the result is verified by checksum.
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

	src, err := openLocal(req)
	if err != nil {
		return UploadResult{}, err
	}
	res := UploadResult{SHA256: src.sum, Bytes: src.size}

	prog := &uploadProgress{total: src.size}
	stopHB := f.heartbeats(ctx, prog)
	defer stopHB()

	prog.setPhase("check")
	st, err := f.remoteState(ctx, h, req.Dest)
	if err != nil {
		return UploadResult{}, err
	}
	if st.kind == "file" && st.sha256 == src.sum {
		changed, err := f.fixAttrs(ctx, h, req.Dest, st, mode, req.Owner, req.Group)
		res.Changed = changed
		return res, err
	}

	prog.setPhase("upload")
	if h.Sudo {
		err = f.uploadSudo(ctx, h, req, mode, src, prog)
	} else {
		err = f.uploadDirect(ctx, h, req, mode, src, prog)
	}
	if err != nil {
		return UploadResult{}, err
	}

	prog.setPhase("verify")
	st, err = f.remoteState(ctx, h, req.Dest)
	if err != nil {
		return UploadResult{}, err
	}
	if st.sha256 != src.sum {
		return UploadResult{}, hostError(h, ErrChecksumMismatch, true,
			"after uploading %s to %s the host's copy has SHA-256 %s, not %s; is something else writing it?", req.Src, req.Dest, st.sha256, src.sum)
	}
	res.Changed = true
	return res, nil
}

// localContent is the upload's content: a rendered template in memory, or the source
// file, streamed (it is hashed once and read again only when it has to be sent).
type localContent struct {
	data   []byte // rendered template; nil for plain files
	path   string
	size   int64
	sum    string
	isTmpl bool
}

func (c *localContent) open() (io.ReadCloser, error) {
	if c.isTmpl {
		return io.NopCloser(bytes.NewReader(c.data)), nil
	}
	return os.Open(c.path)
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

func openLocal(req UploadRequest) (*localContent, error) {
	h := req.Host
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
		r, err := os.Open(req.Src)
		if err != nil {
			return nil, hostInvalid(h, "upload src: %v", err)
		}
		defer r.Close()
		hash := sha256.New()
		n, err := io.Copy(hash, r)
		if err != nil {
			return nil, hostInvalid(h, "reading upload src %s: %v", req.Src, err)
		}
		return &localContent{path: req.Src, size: n, sum: hex.EncodeToString(hash.Sum(nil))}, nil
	}

	if fi.Size() > maxTemplateSize {
		return nil, hostInvalid(h, "template %s is larger than %d MiB", req.Src, maxTemplateSize>>20)
	}
	text, err := os.ReadFile(req.Src)
	if err != nil {
		return nil, hostInvalid(h, "upload src: %v", err)
	}
	tmpl, err := template.New(filepath.Base(req.Src)).Option("missingkey=error").Parse(string(text))
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
	var out bytes.Buffer
	if err := tmpl.Execute(&out, data); err != nil {
		return nil, hostInvalid(h, "template %s: %v", req.Src, err)
	}
	sum := sha256.Sum256(out.Bytes())
	return &localContent{data: out.Bytes(), size: int64(out.Len()), sum: hex.EncodeToString(sum[:]), isTmpl: true}, nil
}

// remoteFile is what the host has at an upload's destination.
type remoteFile struct {
	kind       string // "file", "absent"
	sha256     string
	mode       uint32
	user, uid  string
	group, gid string
}

// stateScript reports on $1: "dir", "nodir" (its directory is missing), "absent",
// or "file" followed by the content's sha256sum and stat's mode, owner and group.
// sha256sum reads stdin so that odd file names need no unescaping.
const stateScript = `if [ -d "$1" ]; then echo dir; exit 0; fi
if [ ! -e "$1" ]; then
  if [ -d "$(dirname -- "$1")" ]; then echo absent; else echo nodir; fi
  exit 0
fi
echo file
sha256sum <"$1" && stat -c '%a %U %G %u %g' -- "$1"`

func (f *Files) remoteState(ctx context.Context, h playbooks.Host, dest string) (remoteFile, error) {
	r, err := f.pool.run(ctx, h, remoteExec{argv: []string{"/bin/sh", "-c", stateScript, "clusterflow-stat", dest}, sudo: h.Sudo})
	if err != nil {
		return remoteFile{}, err
	}
	if r.exitCode != 0 {
		return remoteFile{}, remoteFailed(h, "cannot read %s (exit %d): %s", dest, r.exitCode, strings.TrimSpace(r.stderr))
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	switch lines[0] {
	case "dir":
		return remoteFile{}, hostInvalid(h, "upload dest %s is a directory on the host; give the full path of the file", dest)
	case "nodir":
		return remoteFile{}, remoteFailed(h, "directory %s does not exist on the host; create it in an earlier step", path.Dir(dest))
	case "absent":
		return remoteFile{kind: "absent"}, nil
	}
	if lines[0] != "file" || len(lines) != 3 {
		return remoteFile{}, remoteFailed(h, "unexpected output while checking %s: %q", dest, r.stdout)
	}
	sum, _, _ := strings.Cut(lines[1], " ")
	fields := strings.Fields(lines[2])
	if len(sum) != 64 || len(fields) != 5 {
		return remoteFile{}, remoteFailed(h, "unexpected output while checking %s: %q", dest, r.stdout)
	}
	mode, err := strconv.ParseUint(fields[0], 8, 32)
	if err != nil {
		return remoteFile{}, remoteFailed(h, "unexpected mode %q for %s", fields[0], dest)
	}
	return remoteFile{kind: "file", sha256: sum, mode: uint32(mode),
		user: fields[1], group: fields[2], uid: fields[3], gid: fields[4]}, nil
}

// fixAttrs sets mode and ownership of an existing file whose content is right. chown
// goes first: it clears setuid/setgid bits, which chmod then sets.
func (f *Files) fixAttrs(ctx context.Context, h playbooks.Host, dest string, st remoteFile, mode uint32, owner, group string) (bool, error) {
	changed := false
	wantOwner := owner != "" && owner != st.user && owner != st.uid
	wantGroup := group != "" && group != st.group && group != st.gid
	if wantOwner || wantGroup {
		if err := f.exec(ctx, h, "chown", chownArgv(owner, group, dest)); err != nil {
			return false, err
		}
		changed = true
	}
	if st.mode != mode || changed {
		if err := f.exec(ctx, h, "chmod", []string{"chmod", fmt.Sprintf("%04o", mode), "--", dest}); err != nil {
			return changed, err
		}
		changed = changed || st.mode != mode
	}
	return changed, nil
}

func chownArgv(owner, group, file string) []string {
	spec := owner
	if group != "" {
		spec += ":" + group
	}
	return []string{"chown", spec, "--", file}
}

// exec runs a helper command with the host's sudo setting; a non-zero exit is an error.
func (f *Files) exec(ctx context.Context, h playbooks.Host, what string, argv []string) error {
	r, err := f.pool.run(ctx, h, remoteExec{argv: argv, sudo: h.Sudo})
	if err != nil {
		return err
	}
	if r.exitCode != 0 {
		return remoteFailed(h, "%s failed (exit %d): %s", what, r.exitCode, strings.TrimSpace(r.stderr+" "+r.stdout))
	}
	return nil
}

// uploadDirect writes the file over SFTP as the login user: temporary file in the
// destination directory (created exclusively), content, fsync, mode, rename over
// the destination. The temporary file is removed on any failure.
func (f *Files) uploadDirect(ctx context.Context, h playbooks.Host, req UploadRequest, mode uint32, src *localContent, prog *uploadProgress) error {
	client, closeSFTP, err := f.sftpClient(ctx, h)
	if err != nil {
		return err
	}
	defer closeSFTP()

	tmp := path.Join(path.Dir(req.Dest), "."+path.Base(req.Dest)+".clusterflow-tmp-"+randomSuffix())
	if err := f.writeTemp(ctx, h, client, tmp, src, prog, func() error {
		// Until the content is complete the file is private (0600); the final mode
		// comes after chown, which would clear setuid bits set before it.
		if req.Owner != "" || req.Group != "" {
			if err := f.exec(ctx, h, "chown", chownArgv(req.Owner, req.Group, tmp)); err != nil {
				return err
			}
		}
		return nil
	}, mode); err != nil {
		return err
	}
	// OpenSSH's SFTP rename refuses to replace an existing file; posix-rename@openssh.com
	// is rename(2), atomic over the old file.
	if err := client.PosixRename(tmp, req.Dest); err != nil {
		f.removeTemp(ctx, h, client, tmp)
		return f.sftpError(ctx, h, "renaming the uploaded file onto "+req.Dest, err)
	}
	return nil
}

// uploadSudo serves hosts whose login user is not root: the content goes to a
// private file in /tmp as the login user, then one sudo call installs it with mode
// and ownership next to the destination and renames it over the destination.
func (f *Files) uploadSudo(ctx context.Context, h playbooks.Host, req UploadRequest, mode uint32, src *localContent, prog *uploadProgress) error {
	client, closeSFTP, err := f.sftpClient(ctx, h)
	if err != nil {
		return err
	}
	defer closeSFTP()

	suffix := randomSuffix()
	tmp := "/tmp/.clusterflow-upload-" + suffix
	if err := f.writeTemp(ctx, h, client, tmp, src, prog, nil, 0o600); err != nil {
		return err
	}
	defer f.removeTemp(ctx, h, client, tmp)

	stage := path.Join(path.Dir(req.Dest), "."+path.Base(req.Dest)+".clusterflow-tmp-"+suffix)
	install := []string{"install", "-m", fmt.Sprintf("%04o", mode)}
	if req.Owner != "" {
		install = append(install, "-o", req.Owner)
	}
	if req.Group != "" {
		install = append(install, "-g", req.Group)
	}
	install = append(install, "--", tmp, stage)
	script := shellJoin(install) +
		" && { sync -- " + shellQuote(stage) + " 2>/dev/null || :; }" +
		" && mv -f -- " + shellQuote(stage) + " " + shellQuote(req.Dest) +
		" || { rc=$?; rm -f -- " + shellQuote(stage) + "; exit $rc; }"
	return f.exec(ctx, h, "installing the file with sudo", []string{"/bin/sh", "-c", script})
}

// writeTemp creates tmp exclusively, lets prepare act on it, writes the content with
// progress, fsyncs and sets mode. On failure tmp is removed.
func (f *Files) writeTemp(ctx context.Context, h playbooks.Host, client *sftp.Client, tmp string, src *localContent, prog *uploadProgress, prepare func() error, mode uint32) (err error) {
	file, err := client.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return f.sftpError(ctx, h, "creating "+tmp, err)
	}
	defer func() {
		if err != nil {
			file.Close()
			f.removeTemp(ctx, h, client, tmp)
		}
	}()
	if err := file.Chmod(0o600); err != nil {
		return f.sftpError(ctx, h, "chmod "+tmp, err)
	}
	if prepare != nil {
		if err := prepare(); err != nil {
			return err
		}
	}
	r, err := src.open()
	if err != nil {
		return hostInvalid(h, "upload src: %v", err)
	}
	defer r.Close()
	if _, err := file.ReadFromWithConcurrency(&countingReader{r: r, n: &prog.done}, 0); err != nil {
		return f.sftpError(ctx, h, "writing "+tmp, err)
	}
	if err := file.Sync(); err != nil {
		var se *sftp.StatusError
		// fsync@openssh.com is an OpenSSH extension; other servers may lack it.
		if !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxOpUnsupported {
			return f.sftpError(ctx, h, "fsync "+tmp, err)
		}
	}
	if err := file.Chmod(os.FileMode(mode)); err != nil {
		return f.sftpError(ctx, h, "chmod "+tmp, err)
	}
	if err := file.Close(); err != nil {
		return f.sftpError(ctx, h, "closing "+tmp, err)
	}
	return nil
}

// removeTemp deletes a temporary file, best effort. After a cancellation the SFTP
// client is closed, so it falls back to a short rm over a fresh context.
func (f *Files) removeTemp(ctx context.Context, h playbooks.Host, client *sftp.Client, tmp string) {
	if ctx.Err() == nil {
		if err := client.Remove(tmp); err == nil || errors.Is(err, fs.ErrNotExist) {
			return
		}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	_, _ = f.pool.run(rctx, h, remoteExec{argv: []string{"rm", "-f", "--", tmp}, sudo: h.Sudo})
}

// sftpClient starts the SFTP subsystem on a pooled connection. The returned close
// function ends the client and its session. The client is closed early when ctx
// ends, which makes a transfer in progress fail at once.
func (f *Files) sftpClient(ctx context.Context, h playbooks.Host) (*sftp.Client, func(), error) {
	sess, err := f.pool.session(ctx, h)
	if err != nil {
		return nil, nil, err
	}
	stdin, err := sess.StdinPipe()
	if err == nil {
		var stdout io.Reader
		stdout, err = sess.StdoutPipe()
		if err == nil {
			if err = sess.RequestSubsystem("sftp"); err != nil {
				sess.Close()
				return nil, nil, remoteFailed(h, "the host's sshd offers no SFTP (%v); add a Subsystem sftp line to its sshd_config", err)
			}
			var client *sftp.Client
			client, err = sftp.NewClientPipe(stdout, stdin, sftp.UseConcurrentWrites(true))
			if err == nil {
				stop := context.AfterFunc(ctx, func() { client.Close() })
				return client, func() {
					stop()
					client.Close()
					sess.Close()
				}, nil
			}
		}
	}
	sess.Close()
	return nil, nil, hostUnreachable(h, "cannot start SFTP: %v", err)
}

// sftpError types an SFTP failure: server status codes (permission denied, no such
// file, disk full) are not fixed by retrying; anything else is a lost connection.
func (f *Files) sftpError(ctx context.Context, h playbooks.Host, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var se *sftp.StatusError
	if errors.As(err, &se) || errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrExist) {
		return remoteFailed(h, "%s: %v", what, err)
	}
	return hostUnreachable(h, "%s: %v", what, err)
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

// heartbeats records progress every heartbeatEvery until the returned stop is called.
// Outside an activity context (direct calls in tests) it does nothing.
func (f *Files) heartbeats(ctx context.Context, prog *uploadProgress) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	every := heartbeatInterval(ctx, f.heartbeatEvery)
	return tick(ctx, every, func() { activity.RecordHeartbeat(ctx, prog.snapshot()) })
}

// countingReader counts bytes read into n.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// randomSuffix names temporary files; 96 random bits make collisions moot and
// names unguessable.
func randomSuffix() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}
