package activities

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"golang.org/x/crypto/ssh"

	"github.com/clusterflow/clusterflow/playbooks"
)

// This file holds the activities of the ConsulBootstrap procedure: the gossip key on
// the worker, then on each host the consul binary, the agent's configuration and the
// running agent, and last the cluster as the agent's HTTP API reports it, reached
// through the SSH connection. Each activity checks before it acts, so a second run
// finds the work done and reports it unchanged.
//
// The gossip encryption key is a secret: it is made and read on the worker, written
// into the host's configuration file over SFTP, and never put in an activity's input
// or output, a heartbeat, a log line or an error message. Workflows see the key
// file's path and a key ID (a hash that identifies the key without revealing it).

// Error types of the Consul activities, in addition to those of errors.go and
// docker.go (the apt source reuses ErrPackageManagerBusy, ErrPackageUnavailable and
// ErrPackageInstallFailed; a download or upload with the wrong content is
// ErrChecksumMismatch).
const (
	// ErrGossipKeyMismatch: the gossip key file on the worker running the activity
	// is not the key the run started with (the file was replaced meanwhile, or
	// workers on different machines have different files). Non-retryable.
	ErrGossipKeyMismatch = "GossipKeyMismatch"
	// ErrConsulDownloadFailed: the host could not download the release zip.
	// Retryable.
	ErrConsulDownloadFailed = "ConsulDownloadFailed"
	// ErrConsulNotReady: the agent did not answer after it was started, or the
	// cluster did not reach the expected state (a leader, the expected Raft peers,
	// every member alive) within the verification time. Retryable.
	ErrConsulNotReady = "ConsulNotReady"
)

// Paths and addresses on the hosts.
const (
	consulBinDir    = "/usr/local/bin" // file and url sources; apt installs /usr/bin/consul
	consulConfigDir = "/etc/consul.d"
	// ConsulConfigFile is the file clusterflow writes in the configuration directory;
	// other files there (the apt package's consul.hcl) are read by the agent too.
	ConsulConfigFile = "clusterflow.json"
	consulDataDir    = "/opt/consul"
	consulUnit       = "/etc/systemd/system/consul.service"
	// consulSourceFile records which release zip made /usr/local/bin/consul (url).
	consulSourceFile = "/var/lib/clusterflow/consul-source"
	// ConsulHTTPAddr is where agents serve their HTTP API: loopback only
	// (client_addr), reached from the worker through the SSH connection.
	ConsulHTTPAddr = "127.0.0.1:8500"
	// DefaultConsulAptRepo is HashiCorp's apt repository; a mirror has its layout.
	DefaultConsulAptRepo = "https://apt.releases.hashicorp.com"
	consulKeyring        = "/etc/apt/keyrings/hashicorp.asc"
	consulSourcesList    = "/etc/apt/sources.list.d/hashicorp.list"
)

// Consul holds the activities of the ConsulBootstrap procedure: EnsureGossipKey (on
// the worker), InstallConsul, ConfigureConsul, StartConsul and VerifyConsul.
type Consul struct {
	pool           *Pool
	heartbeatEvery time.Duration
	lockRetryDelay time.Duration // NextRetryDelay of ErrPackageManagerBusy
	// verifyTimeout bounds VerifyConsul's wait for a healthy cluster; pollEvery is
	// the gap between two looks at the API.
	verifyTimeout time.Duration
	pollEvery     time.Duration
	// Paths on the host and the API address; tests point them elsewhere.
	binDir, configDir, dataDir, unitFile, sourceFile string
	httpAddr                                         string
}

// NewConsul returns the Consul activities, working through pool.
func NewConsul(pool *Pool) *Consul {
	return &Consul{
		pool:           pool,
		heartbeatEvery: 5 * time.Second,
		lockRetryDelay: 15 * time.Second,
		verifyTimeout:  2 * time.Minute,
		pollEvery:      time.Second,
		binDir:         consulBinDir,
		configDir:      consulConfigDir,
		dataDir:        consulDataDir,
		unitFile:       consulUnit,
		sourceFile:     consulSourceFile,
		httpAddr:       ConsulHTTPAddr,
	}
}

// begin starts an activity's bookkeeping and heartbeats, shared with the Docker
// activities (heartbeat details: DockerProgress).
func (c *Consul) begin(ctx context.Context, h playbooks.Host) (*dockerOp, func()) {
	return c.docker().begin(ctx, h)
}

// docker is the Docker activities' plumbing on the same pool: OS detection and apt.
func (c *Consul) docker() *Docker {
	return &Docker{pool: c.pool, heartbeatEvery: c.heartbeatEvery, lockRetryDelay: c.lockRetryDelay}
}

// ---------------------------------------------------------------------------
// EnsureGossipKey

// GossipKeyRequest names the gossip key file on the worker.
type GossipKeyRequest struct {
	Path string `json:"path"` // absolute path on the worker
}

// GossipKeyInfo identifies the gossip key without revealing it.
type GossipKeyInfo struct {
	Path string `json:"path"`
	// KeyID is "sha256:" and 16 hex digits of a hash of the key: the same key gives
	// the same ID, and the ID gives nothing away about the key.
	KeyID     string `json:"keyId"`
	Generated bool   `json:"generated,omitempty"`
}

// gossipKeyBytes is the size of generated keys (what `consul keygen` makes).
const gossipKeyBytes = 32

// EnsureGossipKey makes sure the gossip encryption key file exists on the worker: 32
// random bytes, base64, mode 0600 (its directory is created 0700 when missing). The
// file is created exclusively (a complete temporary file hard-linked into place), so
// two workers racing to create it end up with the same key. An existing file is
// read and checked (base64 of 16, 24 or 32 bytes, as Consul accepts) and its mode
// tightened to 0600. Only the path and the key ID are returned.
func (c *Consul) EnsureGossipKey(ctx context.Context, req GossipKeyRequest) (GossipKeyInfo, error) {
	if err := checkGossipKeyPath(req.Path); err != nil {
		return GossipKeyInfo{}, err
	}
	info := GossipKeyInfo{Path: req.Path}
	if _, err := os.Stat(req.Path); errors.Is(err, fs.ErrNotExist) {
		created, err := createGossipKey(req.Path)
		if err != nil {
			return GossipKeyInfo{}, err
		}
		info.Generated = created
	}
	_, id, err := readGossipKey(req.Path)
	if err != nil {
		return GossipKeyInfo{}, err
	}
	info.KeyID = id
	if activity.IsActivity(ctx) {
		activity.GetLogger(ctx).Info("gossip key ready", "path", req.Path, "keyId", id, "generated", info.Generated)
	}
	return info, nil
}

func checkGossipKeyPath(p string) error {
	switch {
	case p == "":
		return invalidInput("gossipKeyFile is empty: give the absolute path of the gossip key file on the worker")
	case !filepath.IsAbs(p) || filepath.Clean(p) != p:
		return invalidInput(fmt.Sprintf("gossipKeyFile %q must be a clean absolute path on the worker", p))
	}
	return nil
}

// createGossipKey writes a new key to p, unless another run created p meanwhile
// (created is then false).
func createGossipKey(p string) (created bool, err error) {
	dir := filepath.Dir(p)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, localFailed("creating the gossip key's directory", err)
		}
	}
	raw := make([]byte, gossipKeyBytes)
	if _, err := rand.Read(raw); err != nil {
		return false, localFailed("generating a gossip key", err)
	}
	tmp, err := writeTempFile(p, []byte(base64.StdEncoding.EncodeToString(raw)+"\n"), 0o600)
	if err != nil {
		return false, localFailed("writing the gossip key", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, p); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, localFailed("writing the gossip key "+p, err)
	}
	syncDir(dir)
	return true, nil
}

// readGossipKey reads and checks the key file at p, tightening its mode to 0600. It
// returns the key (base64, as Consul's encrypt setting takes it) and its ID. Error
// messages never quote the file's content.
func readGossipKey(p string) (key, id string, err error) {
	data, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", "", invalidInput(fmt.Sprintf("gossip key file %s does not exist on this worker", p))
		}
		return "", "", localFailed("reading the gossip key "+p, err)
	}
	key = strings.TrimSpace(string(data))
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil || (len(raw) != 16 && len(raw) != 24 && len(raw) != 32) {
		return "", "", invalidInput(fmt.Sprintf("gossip key file %s does not hold a key Consul accepts (base64 of 16, 24 or 32 bytes, as `consul keygen` prints); fix or remove it", p))
	}
	if fi, err := os.Stat(p); err == nil && fi.Mode().Perm() != 0o600 {
		if err := os.Chmod(p, 0o600); err != nil {
			return "", "", localFailed("chmod "+p, err)
		}
	}
	return key, gossipKeyID(raw), nil
}

// gossipKeyID names a key by a hash of it.
func gossipKeyID(raw []byte) string {
	sum := sha256.Sum256(append([]byte("clusterflow consul gossip key id\x00"), raw...))
	return "sha256:" + hex.EncodeToString(sum[:8])
}

// ---------------------------------------------------------------------------
// InstallConsul

// InstallConsulRequest is the input of InstallConsul.
type InstallConsulRequest struct {
	Host playbooks.Host `json:"host"`
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

// sha256Hex matches a SHA-256 in lower-case hex.
var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

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
	r, err := op.run(ctx, "version", remoteExec{argv: []string{res.Path, "version"}})
	if err != nil {
		return res, err
	}
	if r.exitCode != 0 {
		return res, remoteFailed(h, "%s does not run on the host (exit %d): %s; is it built for this host's architecture?",
			res.Path, r.exitCode, lastOutputLine(r.stderr+"\n"+r.stdout))
	}
	res.Version = consulVersionOf(r.stdout)
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
func (c *Consul) installFromFile(ctx context.Context, op *dockerOp, req InstallConsulRequest) (InstallConsulResult, error) {
	h := op.host
	dest := path.Join(c.binDir, "consul")
	res := InstallConsulResult{Path: dest}
	switch {
	case !filepath.IsAbs(req.Binary):
		return res, hostInvalid(h, "consul binary %q must be an absolute path on the worker", req.Binary)
	case !sha256Hex.MatchString(req.SHA256):
		return res, hostInvalid(h, "the SHA-256 of the consul binary must be 64 lower-case hex digits, got %q", req.SHA256)
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
		return res, localFailed("reading the consul binary", err)
	}
	if sum != req.SHA256 {
		return res, hostInvalid(h, "consul binary %s has SHA-256 %s, not %s as the playbook says", req.Binary, sum, req.SHA256)
	}

	fa := &Files{pool: c.pool}
	op.setPhase("check")
	st, err := fa.remoteState(ctx, h, dest)
	if err != nil {
		return res, err
	}
	if st.kind == "file" && st.sha256 == sum {
		res.Changed, err = fa.fixAttrs(ctx, h, dest, st, 0o755, "root", "root")
		return res, err
	}
	op.acting("upload")
	prog := &uploadProgress{total: fi.Size()}
	op.setUpload(prog)
	defer op.setUpload(nil)
	src := &localContent{path: req.Binary, size: fi.Size(), sum: sum}
	ureq := UploadRequest{Host: h, Src: req.Binary, Dest: dest, Mode: 0o755, Owner: "root", Group: "root"}
	if h.Sudo {
		err = fa.uploadSudo(ctx, h, ureq, 0o755, src, prog)
	} else {
		err = fa.uploadDirect(ctx, h, ureq, 0o755, src, prog)
	}
	if err != nil {
		return res, err
	}
	op.setPhase("verify")
	if st, err = fa.remoteState(ctx, h, dest); err != nil {
		return res, err
	}
	if st.sha256 != sum {
		return res, hostError(h, ErrChecksumMismatch, true, "after uploading the consul binary to %s the host's copy has SHA-256 %s, not %s", dest, st.sha256, sum)
	}
	res.Changed = true
	res.Message = fmt.Sprintf("file %s, %s, SHA-256 %s…", filepath.Base(req.Binary), byteCount(fi.Size()), sum[:8])
	return res, nil
}

func byteCount(n int64) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}

// urlStateScript prints the record of the release zip that made the binary $1 ($2
// is the record: "ZIPSHA BINSHA"), then the binary's SHA-256 (or "absent").
const urlStateScript = `cat -- "$2" 2>/dev/null || echo none
if [ -f "$1" ]; then sha256sum <"$1" | cut -d' ' -f1; else echo absent; fi`

// urlInstallScript downloads the zip $1, checks it against $2 (exit 5 when it
// differs), unpacks consul from it and installs it as $3 (0755, atomically), and
// writes the record $4. Exit 4: the download failed; exit 6: nothing on the host
// can unpack a zip; exit 7: the zip holds no consul.
const urlInstallScript = `set -eu
umask 022
tmp=$(mktemp -d /tmp/clusterflow-consul.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
zip="$tmp/consul.zip"
if command -v curl >/dev/null 2>&1; then
  curl -fsSL --retry 3 -o "$zip" "$1" || exit 4
elif command -v wget >/dev/null 2>&1; then
  wget -q -O "$zip" "$1" || exit 4
else
  /usr/lib/apt/apt-helper download-file "$1" "$zip" >/dev/null || exit 4
fi
got=$(sha256sum <"$zip" | cut -d' ' -f1)
if [ "$got" != "$2" ]; then echo "the download has SHA-256 $got, not $2" >&2; exit 5; fi
mkdir "$tmp/x"
if command -v unzip >/dev/null 2>&1; then unzip -q -o "$zip" consul -d "$tmp/x" || exit 7
elif command -v busybox >/dev/null 2>&1 && busybox unzip >/dev/null 2>&1; then (cd "$tmp/x" && busybox unzip -q -o "$zip" consul) || exit 7
elif command -v python3 >/dev/null 2>&1; then python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("consul", sys.argv[2])' "$zip" "$tmp/x" || exit 7
else echo "no unzip, busybox or python3 on the host" >&2; exit 6
fi
[ -f "$tmp/x/consul" ] || exit 7
mkdir -p "$(dirname "$3")" "$(dirname "$4")"
install -m 0755 "$tmp/x/consul" "$3.clusterflow-tmp"
sync "$3.clusterflow-tmp" 2>/dev/null || :
mv -f "$3.clusterflow-tmp" "$3"
printf '%s %s\n' "$2" "$(sha256sum <"$3" | cut -d' ' -f1)" >"$4"`

// installFromURL has the host download and unpack the release zip.
func (c *Consul) installFromURL(ctx context.Context, op *dockerOp, req InstallConsulRequest) (InstallConsulResult, error) {
	h := op.host
	dest := path.Join(c.binDir, "consul")
	res := InstallConsulResult{Path: dest}
	if !sha256Hex.MatchString(req.SHA256) {
		return res, hostInvalid(h, "the SHA-256 of the release zip must be 64 lower-case hex digits, got %q", req.SHA256)
	}
	if !strings.HasPrefix(req.URL, "http://") && !strings.HasPrefix(req.URL, "https://") {
		return res, hostInvalid(h, "consul url %q must be an http or https URL", req.URL)
	}
	r, err := op.run(ctx, "check", op.script(urlStateScript, dest, c.sourceFile))
	if err != nil {
		return res, err
	}
	lines := strings.Fields(r.stdout)
	if len(lines) == 3 && lines[0] == req.SHA256 && lines[1] == lines[2] {
		return res, nil // made from this zip, and not changed since
	}
	op.acting("download")
	r, err = op.run(ctx, "download", op.script(urlInstallScript, req.URL, req.SHA256, dest, c.sourceFile))
	if err != nil {
		return res, err
	}
	msg := lastOutputLine(r.stderr + "\n" + r.stdout)
	switch r.exitCode {
	case 0:
	case 4:
		return res, hostError(h, ErrConsulDownloadFailed, true, "downloading %s failed: %s", req.URL, msg)
	case 5:
		return res, hostError(h, ErrChecksumMismatch, true, "%s: %s", req.URL, msg)
	case 6:
		return res, remoteFailed(h, "cannot unpack the release zip: %s; install unzip", msg)
	case 7:
		return res, remoteFailed(h, "%s holds no consul executable (%s)", req.URL, msg)
	default:
		return res, remoteFailed(h, "installing consul from %s failed (exit %d): %s", req.URL, r.exitCode, msg)
	}
	res.Changed = true
	res.Message = "url " + path.Base(req.URL)
	return res, nil
}

// installFromApt installs the consul package from HashiCorp's repository.
func (c *Consul) installFromApt(ctx context.Context, op *dockerOp, req InstallConsulRequest) (InstallConsulResult, error) {
	h := op.host
	d := c.docker()
	res := InstallConsulResult{Path: "/usr/bin/consul"}
	if err := checkPackageVersion(req.Version); err != nil {
		return res, hostInvalid(h, "%v", err)
	}
	repo := strings.TrimRight(req.URL, "/")
	if repo == "" {
		repo = DefaultConsulAptRepo
	}
	pin := func(string) string { return req.Version }
	repaired, err := d.repairDpkg(ctx, op)
	if err != nil {
		return res, err
	}
	have, err := d.installedPackages(ctx, op, []string{"consul"})
	if err != nil {
		return res, err
	}
	if len(missingPackages(have, []string{"consul"}, pin)) == 0 {
		res.Changed = repaired
		return res, nil
	}
	r, err := op.run(ctx, "detect", op.script(detectScript))
	if err != nil {
		return res, err
	}
	parts := strings.Split(r.stdout, "@@clusterflow@@\n")
	if r.exitCode != 0 || len(parts) != 3 {
		return res, remoteFailed(h, "reading /etc/os-release failed (exit %d): %s", r.exitCode, strings.TrimSpace(r.stderr))
	}
	osInfo, problem := osInfoFrom(parseOSRelease(parts[0]), strings.TrimSpace(parts[1]), strings.TrimSpace(parts[2]) == "apt")
	if problem == "" && osInfo.Codename == "" {
		problem = osInfo.Name + " has no release codename (VERSION_CODENAME), which HashiCorp's repository needs"
	}
	if problem != "" {
		return res, hostError(h, ErrUnsupportedOS, false, "%s; use source file or url", strings.ReplaceAll(problem, "InstallDocker", "the apt source"))
	}
	if strings.HasPrefix(repo, "https:") {
		if ca, err := d.installedPackages(ctx, op, []string{"ca-certificates"}); err != nil {
			return res, err
		} else if !ca["ca-certificates"].installed() {
			if err := d.installFromArchive(ctx, op, []string{"ca-certificates"}, func(string) string { return "" }, false); err != nil {
				return res, err
			}
		}
	}
	op.acting("hashicorp repository")
	line := fmt.Sprintf("deb [arch=%s signed-by=%s] %s %s main\n", osInfo.Arch, consulKeyring, repo, osInfo.Codename)
	r, err = op.run(ctx, "hashicorp repository", op.script(aptRepoScript, repo+"/gpg", line, consulKeyring, consulSourcesList))
	if err != nil {
		return res, err
	}
	if r.exitCode != 0 {
		msg := fmt.Sprintf("setting up HashiCorp's apt repository from %s failed (exit %d): %s", repo, r.exitCode, lastOutputLine(r.stderr+"\n"+r.stdout))
		if r.exitCode == 3 {
			return res, hostError(h, ErrPackageUnavailable, false, "%s", msg)
		}
		return res, hostError(h, ErrPackageInstallFailed, true, "%s", msg)
	}
	if err := d.installFromArchive(ctx, op, []string{"consul"}, pin, repaired); err != nil {
		return res, err
	}
	have, err = d.installedPackages(ctx, op, []string{"consul"})
	if err != nil {
		return res, err
	}
	if len(missingPackages(have, []string{"consul"}, pin)) > 0 {
		return res, hostError(h, ErrPackageInstallFailed, true, "apt finished but consul is still not installed%s", pinNote(req.Version))
	}
	res.Changed = true
	res.Message = "apt " + have["consul"].version + " from " + repo
	return res, nil
}

// ---------------------------------------------------------------------------
// ConfigureConsul

// ConsulConfigRequest is the input of ConfigureConsul: the agent's settings, and
// where the worker keeps the gossip key (never the key itself).
type ConsulConfigRequest struct {
	Host       playbooks.Host `json:"host"`
	Server     bool           `json:"server"`
	Datacenter string         `json:"datacenter"`
	// BootstrapExpect is the number of servers (servers only).
	BootstrapExpect int `json:"bootstrapExpect,omitempty"`
	// RetryJoin are the servers' addresses, as the inventory gives them.
	RetryJoin []string `json:"retryJoin"`
	// BindInterface: bind to this interface's address; empty: the host's
	// inventory address (a DNS name is resolved on the host).
	BindInterface string `json:"bindInterface,omitempty"`
	// GossipKeyFile is the key file on the worker; KeyID is the ID EnsureGossipKey
	// returned, which the file must still match.
	GossipKeyFile string `json:"gossipKeyFile"`
	KeyID         string `json:"keyId"`
}

// ConsulConfigResult says what ConfigureConsul did.
type ConsulConfigResult struct {
	Changed bool   `json:"changed"`
	Path    string `json:"path"`
	// BindAddr is the bind_addr written: an address, or a go-sockaddr template.
	BindAddr string `json:"bindAddr"`
}

// agentConfig is the JSON written to the configuration directory. Field order is
// the file's key order.
type agentConfig struct {
	Datacenter      string   `json:"datacenter"`
	NodeName        string   `json:"node_name"`
	DataDir         string   `json:"data_dir"`
	Server          bool     `json:"server"`
	BootstrapExpect int      `json:"bootstrap_expect,omitempty"`
	BindAddr        string   `json:"bind_addr"`
	ClientAddr      string   `json:"client_addr"`
	RetryJoin       []string `json:"retry_join"`
	Encrypt         string   `json:"encrypt"`
}

// consulPrepareScript creates the configuration directory $1 and the data directory
// $2, and resolves $3 (a DNS name; "" for none) on the host. It prints KEY=VALUE
// lines: group (the group the configuration file belongs to: consul when the apt
// package made that group, else root), created=yes when it made a directory, and
// bind (the address $3 resolved to).
const consulPrepareScript = `set -eu
user=root; group=root
if getent passwd consul >/dev/null 2>&1; then user=consul; fi
if getent group consul >/dev/null 2>&1; then group=consul; fi
echo "group=$group"
if [ ! -d "$1" ]; then mkdir -p -m 0755 "$1"; echo created=yes; fi
if [ ! -d "$2" ]; then mkdir -p -m 0750 "$2"; chown "$user:$group" "$2"; echo created=yes; fi
if [ -n "$3" ]; then echo "bind=$(getent ahosts "$3" | awk 'NR == 1 {print $1}')"; fi`

// ConfigureConsul writes the agent's configuration, /etc/consul.d/clusterflow.json
// (mode 0640, root and the consul group or root), when its content differs from
// what the host has: node name (the inventory name), datacenter, data_dir
// /opt/consul, server with bootstrap_expect or client, bind_addr (the inventory
// address, or the interface's address through a go-sockaddr template),
// client_addr 127.0.0.1, retry_join (the servers) and the gossip key, read here
// from the worker's key file. The file goes over SFTP (temporary file, rename) and
// is compared by SHA-256, so the key is never sent when it is there already.
//
// The agent reads encrypt only until it has a keyring of its own (data_dir/serf):
// replacing the key file later changes this file but not a running cluster's key
// (that takes `consul keyring`).
func (c *Consul) ConfigureConsul(ctx context.Context, req ConsulConfigRequest) (ConsulConfigResult, error) {
	h := req.Host
	res := ConsulConfigResult{Path: path.Join(c.configDir, ConsulConfigFile)}
	switch {
	case req.Datacenter == "":
		return res, hostInvalid(h, "datacenter is empty")
	case len(req.RetryJoin) == 0:
		return res, hostInvalid(h, "retryJoin is empty: name at least one server")
	case req.Server && req.BootstrapExpect < 1:
		return res, hostInvalid(h, "a server needs bootstrapExpect of at least 1")
	case req.BindInterface != "" && !ifaceRE.MatchString(req.BindInterface):
		return res, hostInvalid(h, "bindInterface %q is not an interface name", req.BindInterface)
	}
	if err := checkGossipKeyPath(req.GossipKeyFile); err != nil {
		return res, err
	}
	key, id, err := readGossipKey(req.GossipKeyFile)
	if err != nil {
		return res, err
	}
	if id != req.KeyID {
		return res, hostError(h, ErrGossipKeyMismatch, false, "the gossip key in %s on this worker is %s, not %s as when the run started: was the file replaced, or do workers on different machines have different files?",
			req.GossipKeyFile, id, req.KeyID)
	}
	op, done := c.begin(ctx, h)
	defer done()

	// Step 1. Directories, the file's group, the bind address.
	resolve := ""
	if _, err := netip.ParseAddr(h.Address); err != nil && req.BindInterface == "" {
		resolve = h.Address
	}
	r, err := op.run(ctx, "prepare", op.script(consulPrepareScript, c.configDir, c.dataDir, resolve))
	if err != nil {
		return res, err
	}
	if r.exitCode != 0 {
		return res, remoteFailed(h, "preparing %s and %s failed (exit %d): %s", c.configDir, c.dataDir, r.exitCode, lastOutputLine(r.stderr))
	}
	st := parseKeyValues(r.stdout)
	if strings.Contains(r.stdout, "created=yes") {
		op.acting("prepare")
	}
	switch {
	case req.BindInterface != "":
		res.BindAddr = fmt.Sprintf(`{{ GetInterfaceIP %q }}`, req.BindInterface)
	case resolve == "":
		res.BindAddr = h.Address
	default:
		if _, err := netip.ParseAddr(st["bind"]); err != nil {
			return res, remoteFailed(h, "%s does not resolve to an address on the host (%q); give the address in the inventory, or bindInterface", resolve, st["bind"])
		}
		res.BindAddr = st["bind"]
	}

	// Step 2. The file, written only when its content differs.
	cfg := agentConfig{
		Datacenter: req.Datacenter, NodeName: h.Name, DataDir: c.dataDir, Server: req.Server,
		BindAddr: res.BindAddr, ClientAddr: "127.0.0.1", RetryJoin: req.RetryJoin, Encrypt: key,
	}
	if req.Server {
		cfg.BootstrapExpect = req.BootstrapExpect
	}
	content, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return res, hostInvalid(h, "encoding the configuration: %v", err)
	}
	content = append(content, '\n')
	sum := sha256.Sum256(content)
	src := &localContent{data: content, size: int64(len(content)), sum: hex.EncodeToString(sum[:]), isTmpl: true}
	group := st["group"]
	fa := &Files{pool: c.pool}
	op.setPhase("check")
	rf, err := fa.remoteState(ctx, h, res.Path)
	if err != nil {
		return res, err
	}
	if rf.kind == "file" && rf.sha256 == src.sum {
		changed, err := fa.fixAttrs(ctx, h, res.Path, rf, 0o640, "root", group)
		res.Changed = changed || op.changedSoFar()
		return res, err
	}
	op.acting("write")
	ureq := UploadRequest{Host: h, Dest: res.Path, Mode: 0o640, Owner: "root", Group: group}
	prog := &uploadProgress{total: src.size}
	if h.Sudo {
		err = fa.uploadSudo(ctx, h, ureq, 0o640, src, prog)
	} else {
		err = fa.uploadDirect(ctx, h, ureq, 0o640, src, prog)
	}
	if err != nil {
		return res, err
	}
	if rf, err = fa.remoteState(ctx, h, res.Path); err != nil {
		return res, err
	}
	if rf.sha256 != src.sum {
		return res, hostError(h, ErrChecksumMismatch, true, "after writing %s the host's copy differs from what was sent; is something else writing it?", res.Path)
	}
	res.Changed = true
	return res, nil
}

// ifaceRE is a Linux interface name, as the playbook format accepts it.
var ifaceRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.@-]{0,14}$`)

// ---------------------------------------------------------------------------
// StartConsul

// Ways an agent is kept running, as StartConsulResult.Manager reports them (the
// same as the Docker engine's).
const (
	ConsulBySystemd    = EngineBySystemd
	ConsulBySupervisor = EngineBySupervisor
)

// StartConsulRequest is the input of StartConsul.
type StartConsulRequest struct {
	Host   playbooks.Host `json:"host"`
	Binary string         `json:"binary"` // the consul executable on the host
	// Restart a running agent: its binary or configuration changed.
	Restart bool `json:"restart,omitempty"`
}

// StartConsulResult says what StartConsul did.
type StartConsulResult struct {
	Changed bool   `json:"changed"`
	Manager string `json:"manager"`
	// Action: "started", "restarted", "enabled", "waited" (the supervisor was
	// starting it already) or "" (running, nothing to do).
	Action string `json:"action,omitempty"`
}

// consulStateScript reports, as KEY=VALUE lines: manager (systemd, clusterflow-
// service or none), unit (ours: the unit file $4 is clusterflow's; packaged: another
// consul unit; none), service (current: the supervisor's service file runs $1 with
// -config-dir=$2; other; none), enabled and active (yes or no), stale (yes when the
// configuration file $3 or the binary $1 is newer than the running agent: a restart
// a failed earlier run did not get to) and answers (yes when the agent answers on
// its HTTP API).
const consulStateScript = `m=none
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then m=systemd
elif [ -d /etc/clusterflow/services.d ]; then m=clusterflow-service
fi
echo "manager=$m"
enabled=no; active=no; unit=none; service=none; pid=
case $m in
systemd)
  if grep -qs 'written by clusterflow' "$4"; then unit=ours
  elif systemctl cat consul >/dev/null 2>&1; then unit=packaged; fi
  [ "$(systemctl is-enabled consul 2>/dev/null)" = enabled ] && enabled=yes
  systemctl is-active --quiet consul && active=yes
  pid=$(systemctl show -p MainPID --value consul 2>/dev/null || :) ;;
clusterflow-service)
  f=/etc/clusterflow/services.d/consul
  if [ -x "$f" ]; then
    service=other
    if grep -qF -- "$1 agent -config-dir=$2" "$f" || grep -qF -- "'$1' 'agent' '-config-dir=$2'" "$f"; then service=current; enabled=yes; fi
  fi
  pid=$(cat /run/clusterflow/services/consul.pid 2>/dev/null) && kill -0 "$pid" 2>/dev/null && active=yes ;;
esac
echo "unit=$unit"; echo "service=$service"; echo "enabled=$enabled"; echo "active=$active"
stale=no
if [ "$active" = yes ] && [ -n "$pid" ] && [ "$pid" != 0 ] && [ -r "/proc/$pid/stat" ]; then
  btime=$(awk '/^btime/ {print $2}' /proc/stat)
  ticks=$(awk '{print $22}' "/proc/$pid/stat")
  hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
  started=$((btime + ticks / hz + 2))
  for f in "$3" "$1"; do
    if [ -e "$f" ] && [ "$(stat -c %Y "$f")" -gt "$started" ]; then stale=yes; fi
  done
fi
echo "stale=$stale"
answers=no
"$1" members -http-addr="http://$5" >/dev/null 2>&1 && answers=yes
echo "answers=$answers"`

// consulServiceStartScript (re)writes the supervisor's service file for consul ($1
// the binary, $2 the configuration directory), through clusterflow-service when it
// is installed, and waits until the supervisor has started it.
const consulServiceStartScript = `set -eu
if command -v clusterflow-service >/dev/null 2>&1; then exec clusterflow-service start consul "$1" agent "-config-dir=$2"; fi
f=/etc/clusterflow/services.d/consul
printf '#!/bin/sh\n# written by clusterflow\nexec %s agent -config-dir=%s\n' "$1" "$2" >"$f.clusterflow-tmp"
chmod 0755 "$f.clusterflow-tmp"; mv -f "$f.clusterflow-tmp" "$f"
for i in $(seq 30); do
  pid=$(cat /run/clusterflow/services/consul.pid 2>/dev/null) && kill -0 "$pid" 2>/dev/null && exit 0
  sleep 0.5
done
echo "the supervisor did not start consul within 15 s" >&2; exit 1`

// consulServiceRestartScript restarts the supervised agent: the supervisor starts a
// new one when the old one exits.
const consulServiceRestartScript = `set -eu
if command -v clusterflow-service >/dev/null 2>&1; then exec clusterflow-service restart consul; fi
pid=$(cat /run/clusterflow/services/consul.pid)
kill -TERM "$pid"
for i in $(seq 60); do
  new=$(cat /run/clusterflow/services/consul.pid 2>/dev/null) && [ "$new" != "$pid" ] && kill -0 "$new" 2>/dev/null && exit 0
  sleep 0.5
done
echo "consul did not come back within 30 s" >&2; exit 1`

// consulUnitScript writes the systemd unit $1 with content $2 when it differs, then
// reloads systemd; it prints "changed" when it wrote the unit.
const consulUnitScript = `set -eu
if [ "$(cat "$1" 2>/dev/null || :)" != "$(printf '%s' "$2")" ]; then
  printf '%s' "$2" >"$1.clusterflow-tmp"; chmod 0644 "$1.clusterflow-tmp"
  mv -f "$1.clusterflow-tmp" "$1"
  systemctl daemon-reload
  echo changed
fi`

// consulWaitScript waits up to $3 half-seconds until the agent $1 answers on its
// HTTP API ($2).
const consulWaitScript = `i=0
while [ "$i" -lt "$3" ]; do
  "$1" members -http-addr="http://$2" >/dev/null 2>&1 && exit 0
  sleep 0.5; i=$((i+1))
done
exit 1`

// consulLogScript prints the end of the agent's log, wherever the manager keeps it.
const consulLogScript = `case $1 in
systemd) journalctl -u consul -n 15 --no-pager 2>&1 ;;
*) tail -n 15 /var/log/clusterflow/consul.log 2>&1 ;;
esac`

// consulUnitText is the systemd unit clusterflow writes when no package brought
// one; the agent runs as root.
func consulUnitText(binary, configDir string) string {
	return `# written by clusterflow (ConsulBootstrap)
[Unit]
Description=Consul agent
Documentation=https://developer.hashicorp.com/consul/docs
Wants=network-online.target
After=network-online.target
ConditionDirectoryNotEmpty=` + configDir + `

[Service]
ExecStart=` + binary + ` agent -config-dir=` + configDir + `
ExecReload=/bin/kill -HUP $MAINPID
KillMode=process
KillSignal=SIGTERM
Restart=on-failure
RestartSec=2
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`
}

// safeArg is what may go into a service file or unit unquoted.
var safeArg = regexp.MustCompile(`^/[A-Za-z0-9/._-]+$`)

// StartConsul makes sure the agent runs and starts at boot:
//
//   - with systemd (/run/systemd/system exists): the packaged consul unit when there
//     is one, else a unit clusterflow writes; systemctl enable, then start (or
//     restart when req.Restart);
//   - else, on hosts with the clusterflow node supervisor (the lab nodes): the
//     service file consul, through clusterflow-service when installed; the
//     supervisor restarts the agent when it exits and at every boot.
//
// Hosts with neither fail with a non-retryable ErrRemoteFailed. Then it waits up to
// a minute until the agent answers on its HTTP API. An agent that was running, with
// no restart asked for and no configuration newer than itself, is left alone.
func (c *Consul) StartConsul(ctx context.Context, req StartConsulRequest) (StartConsulResult, error) {
	h := req.Host
	if !safeArg.MatchString(req.Binary) {
		return StartConsulResult{}, hostInvalid(h, "consul binary path %q must be absolute, of letters, digits and / . _ -", req.Binary)
	}
	op, done := c.begin(ctx, h)
	defer done()
	conf := path.Join(c.configDir, ConsulConfigFile)
	r, err := op.run(ctx, "check", op.script(consulStateScript, req.Binary, c.configDir, conf, c.unitFile, c.httpAddr))
	if err != nil {
		return StartConsulResult{}, err
	}
	st := parseKeyValues(r.stdout)
	res := StartConsulResult{Manager: st["manager"]}
	running := st["active"] == "yes" && st["answers"] == "yes"
	restart := req.Restart || st["stale"] == "yes"

	var actions [][]string // argv lists to run in order
	switch res.Manager {
	case ConsulBySystemd:
		if st["unit"] != "packaged" {
			r, err := op.run(ctx, "unit", op.script(consulUnitScript, c.unitFile, consulUnitText(req.Binary, c.configDir)))
			if err != nil {
				return res, err
			}
			if r.exitCode != 0 {
				return res, remoteFailed(h, "writing %s failed (exit %d): %s", c.unitFile, r.exitCode, lastOutputLine(r.stderr))
			}
			if strings.Contains(r.stdout, "changed") {
				op.acting("unit")
				res.Changed, res.Action = true, "unit written"
				restart = restart || st["active"] == "yes"
			}
		}
		if st["enabled"] != "yes" {
			actions = append(actions, []string{"systemctl", "enable", "consul"})
			res.Action = "enabled"
		}
		switch {
		case st["active"] != "yes":
			actions = append(actions, []string{"systemctl", "start", "consul"})
			res.Action = "started"
		case restart:
			actions = append(actions, []string{"systemctl", "restart", "consul"})
			res.Action = "restarted"
		}
	case ConsulBySupervisor:
		switch {
		case st["service"] != "current":
			actions = append(actions, op.script(consulServiceStartScript, req.Binary, c.configDir).argv)
			res.Action = "started"
			if st["active"] == "yes" { // the old service file's agent still runs
				actions = append(actions, op.script(consulServiceRestartScript).argv)
				res.Action = "restarted"
			}
		case st["active"] != "yes":
			res.Action = "waited" // the service file is there: the supervisor is (re)starting it
		case restart:
			actions = append(actions, op.script(consulServiceRestartScript).argv)
			res.Action = "restarted"
		}
	default:
		return res, remoteFailed(h, "cannot start consul: the host has neither systemd nor the clusterflow node supervisor (/etc/clusterflow/services.d)")
	}
	if len(actions) == 0 && running {
		return res, nil
	}
	if len(actions) > 0 {
		op.acting(res.Action)
		res.Changed = true
	}
	for _, argv := range actions {
		r, err := op.run(ctx, res.Action, remoteExec{argv: argv})
		if err != nil {
			return res, err
		}
		if r.exitCode != 0 {
			return res, hostError(h, ErrConsulNotReady, true, "%s failed (exit %d): %s%s", strings.Join(argv[:min(len(argv), 3)], " "), r.exitCode,
				lastOutputLine(r.stderr+"\n"+r.stdout), c.agentLog(ctx, op, res.Manager))
		}
	}
	r, err = op.run(ctx, "wait", op.script(consulWaitScript, req.Binary, c.httpAddr, "120"))
	if err != nil {
		return res, err
	}
	if r.exitCode != 0 {
		return res, hostError(h, ErrConsulNotReady, true, "the agent (%s) did not answer on %s within 60 s%s", res.Manager, c.httpAddr, c.agentLog(ctx, op, res.Manager))
	}
	return res, nil
}

func (c *Consul) agentLog(ctx context.Context, op *dockerOp, manager string) string {
	r, err := op.run(ctx, "log", op.script(consulLogScript, manager))
	if err != nil || strings.TrimSpace(r.stdout) == "" {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return "; agent log: " + strings.Join(lines, " | ")
}

// ---------------------------------------------------------------------------
// VerifyConsul

// VerifyConsulRequest is the input of VerifyConsul: the host whose agent is asked,
// and the nodes (inventory names) that must be in the cluster.
type VerifyConsulRequest struct {
	Host    playbooks.Host `json:"host"`
	Servers []string       `json:"servers"`
	Clients []string       `json:"clients,omitempty"`
}

// ConsulMember is one member of the cluster as /v1/agent/members reports it.
type ConsulMember struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	Role   string `json:"role"`   // server or client
	Status string `json:"status"` // alive, leaving, left, failed
}

// ConsulClusterState is what an agent's HTTP API said, once the cluster was as
// expected.
type ConsulClusterState struct {
	Leader  string         `json:"leader"` // address:port of the Raft leader
	Peers   []string       `json:"peers"`  // Raft peers, address:port, sorted
	Members []ConsulMember `json:"members"`
	// WaitedMs is how long the cluster took to get there.
	WaitedMs int64 `json:"waitedMs"`
}

// VerifyConsul asks the host's agent, through its HTTP API on 127.0.0.1:8500 reached
// over the host's SSH connection (a direct-tcpip channel; the host's sshd must allow
// AllowTcpForwarding local or yes), until the cluster is as expected: a leader is
// elected, the Raft peers are exactly the servers' addresses (port 8300, as the
// members report them), every expected node is a member in its role, and every
// member is alive. It polls every second, heartbeating, for up to two minutes, then
// fails with a retryable ErrConsulNotReady naming what is still wrong.
func (c *Consul) VerifyConsul(ctx context.Context, req VerifyConsulRequest) (ConsulClusterState, error) {
	h := req.Host
	if len(req.Servers) == 0 {
		return ConsulClusterState{}, hostInvalid(h, "no servers to expect")
	}
	op, done := c.begin(ctx, h)
	defer done()
	op.setPhase("api")
	hc := &http.Client{Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			sc, err := c.pool.Client(ctx, h)
			if err != nil {
				return nil, err
			}
			return sc.DialContext(ctx, "tcp", c.httpAddr)
		},
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}}
	defer hc.CloseIdleConnections()

	start := time.Now()
	deadline := start.Add(c.verifyTimeout)
	for {
		st, problem, err := c.clusterState(ctx, hc, req)
		if err != nil {
			return st, err
		}
		if problem == "" {
			st.WaitedMs = time.Since(start).Milliseconds()
			return st, nil
		}
		op.mu.Lock()
		op.lastLine = problem
		op.mu.Unlock()
		if time.Now().After(deadline) {
			return st, hostError(h, ErrConsulNotReady, true, "the cluster is not as expected after %s: %s", c.verifyTimeout, problem)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(c.pollEvery):
		}
	}
}

// memberStatus names Serf's member status codes.
var memberStatus = map[int]string{0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}

// clusterState reads leader, peers and members once. problem says what is not as
// expected ("" when all is well); err is set only for what waiting cannot fix.
func (c *Consul) clusterState(ctx context.Context, hc *http.Client, req VerifyConsulRequest) (st ConsulClusterState, problem string, err error) {
	h := req.Host
	get := func(p string, v any) string {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		hr, _ := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+c.httpAddr+p, nil)
		resp, e := hc.Do(hr)
		if e != nil {
			var oce *ssh.OpenChannelError
			if errors.As(e, &oce) && oce.Reason == ssh.Prohibited {
				err = remoteFailed(h, "sshd refused to forward to %s (%v): the host's sshd_config needs AllowTcpForwarding local (or yes) and no PermitOpen line that excludes it", c.httpAddr, oce)
			}
			var appErr interface{ Type() string }
			if errors.As(e, &appErr) && err == nil && ctx.Err() == nil {
				err = e // the pool could not connect: typed already
			}
			return fmt.Sprintf("GET %s: the agent does not answer (%v)", p, e)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			return fmt.Sprintf("GET %s: %s: %s", p, resp.Status, lastOutputLine(string(body)))
		}
		if e := json.Unmarshal(body, v); e != nil {
			return fmt.Sprintf("GET %s: %v", p, e)
		}
		return ""
	}
	var members []struct {
		Name   string
		Addr   string
		Status int
		Tags   map[string]string
	}
	if p := get("/v1/status/leader", &st.Leader); p != "" {
		return st, p, err
	}
	if p := get("/v1/status/peers", &st.Peers); p != "" {
		return st, p, err
	}
	if p := get("/v1/agent/members", &members); p != "" {
		return st, p, err
	}
	if ctx.Err() != nil {
		return st, "cancelled", ctx.Err()
	}
	slices.Sort(st.Peers)
	var problems []string
	byName := map[string]int{}
	for i, m := range members {
		byName[m.Name] = i
		role := "client"
		if m.Tags["role"] == "consul" {
			role = "server"
		}
		status := memberStatus[m.Status]
		if status == "" {
			status = strconv.Itoa(m.Status)
		}
		st.Members = append(st.Members, ConsulMember{Name: m.Name, Addr: m.Addr, Role: role, Status: status})
		if status != "alive" {
			problems = append(problems, fmt.Sprintf("member %s (%s) is %s", m.Name, m.Addr, status))
		}
	}
	slices.SortFunc(st.Members, func(a, b ConsulMember) int { return strings.Compare(a.Name, b.Name) })
	var wantPeers, missing []string
	for _, name := range req.Servers {
		i, ok := byName[name]
		if !ok {
			missing = append(missing, name)
			continue
		}
		m := members[i]
		if m.Tags["role"] != "consul" {
			problems = append(problems, fmt.Sprintf("%s is a member but not a server", name))
			continue
		}
		port := m.Tags["port"]
		if port == "" {
			port = "8300"
		}
		wantPeers = append(wantPeers, net.JoinHostPort(m.Addr, port))
	}
	for _, name := range req.Clients {
		if i, ok := byName[name]; !ok {
			missing = append(missing, name)
		} else if members[i].Tags["role"] == "consul" {
			problems = append(problems, fmt.Sprintf("%s is a server, not a client", name))
		}
	}
	if len(missing) > 0 {
		problems = append(problems, "not members yet: "+strings.Join(missing, ", "))
	}
	slices.Sort(wantPeers)
	switch {
	case st.Leader == "":
		problems = append([]string{"no leader elected yet"}, problems...)
	case len(missing) == 0 && !slices.Equal(st.Peers, wantPeers):
		problems = append(problems, fmt.Sprintf("Raft peers are [%s], want [%s]", strings.Join(st.Peers, " "), strings.Join(wantPeers, " ")))
	}
	return st, strings.Join(problems, "; "), nil
}
