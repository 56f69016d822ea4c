package activities

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/rules"
	"github.com/clusterflow/clusterflow/internal/workerfs"
	"github.com/clusterflow/clusterflow/playbooks"
)

// InstallConsulRequest is the input of InstallConsul.
type InstallConsulRequest struct {
	Host remote.Host `json:"host"`
	// Source is playbooks.ConsulFromFile (also when empty), ConsulFromURL or
	// ConsulFromApt.
	Source string `json:"source,omitempty"`
	Binary string `json:"binary,omitempty"` // file: the executable on the worker
	SHA256 string `json:"sha256,omitempty"` // file: of Binary; url: of the zip
	// URL is the release zip (url) or the apt repository (apt; default
	// DefaultConsulAptRepo).
	URL     string `json:"url,omitempty"`
	Version string `json:"version,omitempty"` // apt: the version pin
}

// InstallConsulResult says what InstallConsul did.
type InstallConsulResult struct {
	Changed bool   `json:"changed"`
	Path    string `json:"path"`    // the consul executable on the host
	Version string `json:"version"` // what `consul version` says, e.g. 1.22.7
	Message string `json:"message"`
}

// InstallConsul puts the consul executable on the host, unless the right one is
// there already, then checks that it runs there (`consul version`):
//
//   - file: Binary, checked against SHA256 on the worker first, is sent over SFTP to
//     /usr/local/bin/consul (temporary file, fsync, rename) unless the host's copy
//     has that SHA-256 already;
//   - url: the host downloads the zip (curl, wget or apt's own downloader), checks
//     its SHA-256, unpacks consul to /usr/local/bin; a record of the zip's and the
//     binary's SHA-256 in /var/lib/clusterflow makes a re-run a no-op;
//   - apt: HashiCorp's repository (or a mirror) becomes an apt source and the
//     consul package is installed (at Version, when given): /usr/bin/consul.
func (c *Consul) InstallConsul(ctx context.Context, req InstallConsulRequest) (InstallConsulResult, error) {
	h := req.Host
	op, done := c.begin(ctx, h)
	defer done()
	var res InstallConsulResult
	var err error
	switch req.Source {
	case "", playbooks.ConsulFromFile:
		res, err = c.installFromFile(ctx, op, req)
	case playbooks.ConsulFromURL:
		res, err = c.installFromURL(ctx, op, req)
	case playbooks.ConsulFromApt:
		res, err = c.installFromApt(ctx, op, req)
	default:
		return res, hostInvalid(h, "unknown consul source %q", req.Source)
	}
	if err != nil {
		return res, err
	}
	res.Changed = res.Changed || op.changedSoFar()
	r, err := op.run(ctx, "version", remote.Cmd{Argv: []string{res.Path, "version"}})
	if err != nil {
		return res, err
	}
	if r.ExitCode != 0 {
		return res, remoteFailed(h, "%s does not run on the host (exit %d): %s; is it built for this host's architecture?",
			res.Path, r.ExitCode, lastOutputLine(r.Stderr+"\n"+r.Stdout))
	}
	res.Version = consulVersionOf(r.Stdout)
	switch {
	case !res.Changed:
		res.Message = "consul " + res.Version + " already installed"
	case res.Message == "":
		res.Message = "installed consul " + res.Version + " (" + sourceOf(req.Source) + attemptNote(ctx) + ")"
	default: // the source's details
		res.Message = "installed consul " + res.Version + " (" + res.Message + attemptNote(ctx) + ")"
	}
	return res, nil
}

// consulVersionOf reads the version from `consul version` output ("Consul v1.22.7").
func consulVersionOf(out string) string {
	if f := strings.Fields(out); len(f) >= 2 && f[0] == "Consul" {
		return strings.TrimPrefix(f[1], "v")
	}
	return "(unknown version)"
}

func sourceOf(s string) string {
	if s == "" {
		return playbooks.ConsulFromFile
	}
	return s
}

// installFromFile sends the worker's binary to the host.
func (c *Consul) installFromFile(ctx context.Context, op *hostOp, req InstallConsulRequest) (InstallConsulResult, error) {
	h := op.host
	dest := path.Join(c.binDir, "consul")
	res := InstallConsulResult{Path: dest}
	switch {
	case !filepath.IsAbs(req.Binary):
		return res, hostInvalid(h, "consul binary %q must be an absolute path on the worker", req.Binary)
	case !rules.SHA256(req.SHA256):
		return res, hostInvalid(h, "the SHA-256 of the consul binary must be 64 lower-case hex digits, got %q", req.SHA256)
	}
	if err := c.rem.workerFile("consul binary", req.Binary, workerfs.Content); err != nil {
		return res, err
	}
	fi, err := os.Stat(req.Binary)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return res, hostInvalid(h, "consul binary %s does not exist on this worker (`go run ./lab consul` builds one for the lab)", req.Binary)
	case err != nil:
		return res, hostInvalid(h, "consul binary: %v", err)
	case !fi.Mode().IsRegular():
		return res, hostInvalid(h, "consul binary %s is not a regular file", req.Binary)
	}
	op.setPhase("checksum")
	sum, err := fileSHA256(req.Binary)
	if err != nil {
		return res, workerFilesFailed("reading the consul binary", err)
	}
	if sum != req.SHA256 {
		// The file's own sum is not shown: a message must not let a playbook learn
		// the checksum of a worker file it did not give one for.
		return res, hostInvalid(h, "consul binary %s does not have the SHA-256 the playbook gives (%s…); check the file and its SHA256SUMS on the worker (sha256sum %s)", req.Binary, req.SHA256[:12], req.Binary)
	}

	sent, stop := op.sending(fi.Size())
	defer stop()
	want := wantFile{path: dest, src: remote.Content{Path: req.Binary}, size: fi.Size(), sum: sum,
		attrs: remote.Attrs{Mode: 0o755, Owner: "root", Group: "root"}}
	changed, written, err := ensureFile(ctx, c.rem, h, want, op.filePhase, sent)
	if err != nil || !written {
		res.Changed = changed
		return res, err
	}
	res.Changed = true
	res.Message = fmt.Sprintf("file %s, %s, SHA-256 %s…", filepath.Base(req.Binary), byteCount(fi.Size()), sum[:8])
	return res, nil
}

func byteCount(n int64) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}

// installFromURL has the host download and unpack the release zip.
func (c *Consul) installFromURL(ctx context.Context, op *hostOp, req InstallConsulRequest) (InstallConsulResult, error) {
	h := op.host
	dest := path.Join(c.binDir, "consul")
	res := InstallConsulResult{Path: dest}
	if !rules.SHA256(req.SHA256) {
		return res, hostInvalid(h, "the SHA-256 of the release zip must be 64 lower-case hex digits, got %q", req.SHA256)
	}
	if !strings.HasPrefix(req.URL, "http://") && !strings.HasPrefix(req.URL, "https://") {
		return res, hostInvalid(h, "consul url %q must be an http or https URL", req.URL)
	}
	r, err := op.run(ctx, "check", consulURLStateScript.cmd(dest, c.sourceFile))
	if err != nil {
		return res, err
	}
	lines := strings.Fields(r.Stdout)
	if len(lines) == 3 && lines[0] == req.SHA256 && lines[1] == lines[2] {
		return res, nil // made from this zip, and not changed since
	}
	op.acting("download")
	r, err = op.run(ctx, "download", consulURLInstallScript.cmd(req.URL, req.SHA256, dest, c.sourceFile))
	if err != nil {
		return res, err
	}
	msg := lastOutputLine(r.Stderr + "\n" + r.Stdout)
	switch r.ExitCode {
	case 0:
	case 4:
		return res, consulDownloadFailed(h, "downloading %s failed: %s", req.URL, msg)
	case 5:
		return res, checksumMismatch(h, "%s: %s", req.URL, msg)
	case 6:
		return res, remoteFailed(h, "cannot unpack the release zip: %s; install unzip", msg)
	case 7:
		return res, remoteFailed(h, "%s holds no consul executable (%s)", req.URL, msg)
	default:
		return res, remoteFailed(h, "installing consul from %s failed (exit %d): %s", req.URL, r.ExitCode, msg)
	}
	res.Changed = true
	res.Message = "url " + path.Base(req.URL)
	return res, nil
}

// installFromApt installs the consul package from HashiCorp's repository.
func (c *Consul) installFromApt(ctx context.Context, op *hostOp, req InstallConsulRequest) (InstallConsulResult, error) {
	h := op.host
	a := apt{op: op, retryDelay: c.lockRetryDelay}
	res := InstallConsulResult{Path: "/usr/bin/consul"}
	if err := checkPackageVersion(req.Version); err != nil {
		return res, hostInvalid(h, "consul %v", err)
	}
	repo := strings.TrimRight(req.URL, "/")
	if repo == "" {
		repo = DefaultConsulAptRepo
	}
	pin := func(string) string { return req.Version }
	repaired, err := a.repair(ctx)
	if err != nil {
		return res, err
	}
	have, err := a.installed(ctx, []string{"consul"})
	if err != nil {
		return res, err
	}
	if len(missingPackages(have, []string{"consul"}, pin)) == 0 {
		res.Changed = repaired
		return res, nil
	}
	osInfo, problem, err := detectOS(ctx, op)
	if err != nil {
		return res, err
	}
	if problem == "" && osInfo.Codename == "" {
		problem = osInfo.Name + " has no release codename (VERSION_CODENAME), which HashiCorp's repository needs"
	}
	if problem != "" {
		return res, unsupportedOS(h, "%s; use source file or url", strings.ReplaceAll(problem, "InstallDocker", "the apt source"))
	}
	line := fmt.Sprintf("deb [arch=%s signed-by=%s] %s %s main\n", osInfo.Arch, consulKeyring, repo, osInfo.Codename)
	if err := a.addRepo(ctx, aptRepo{name: "HashiCorp", url: repo, keyURL: repo + "/gpg", line: line, keyring: consulKeyring, list: consulSourcesList}); err != nil {
		return res, err
	}
	if err := a.install(ctx, []string{"consul"}, pin, repaired); err != nil {
		return res, err
	}
	have, err = a.installed(ctx, []string{"consul"})
	if err != nil {
		return res, err
	}
	if len(missingPackages(have, []string{"consul"}, pin)) > 0 {
		return res, packageInstallFailed(h, "apt finished but consul is still not installed%s", pinNote(req.Version))
	}
	res.Changed = true
	res.Message = "apt " + have["consul"].version + " from " + repo
	return res, nil
}
