package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/clusterflow/clusterflow/playbooks"
)

// This file holds the activities of the InstallDocker procedure. Each one checks the
// host first and acts only when something is missing, so that a retry (after a lost
// connection, or on a new worker after the old one died) and a second run of the
// playbook find the work done and report it unchanged.

// Error types of the Docker activities, in addition to those of errors.go.
const (
	// ErrUnsupportedOS: the host is not Debian, Ubuntu or a derivative of them with
	// apt and dpkg. Non-retryable; the message names what /etc/os-release says.
	ErrUnsupportedOS = "UnsupportedOS"
	// ErrPackageManagerBusy: apt or dpkg kept its lock for longer than the lock
	// timeout (another apt run, unattended-upgrades). Retryable, with a delay.
	ErrPackageManagerBusy = "PackageManagerBusy"
	// ErrPackageUnavailable: apt cannot find the package or the pinned version, its
	// dependencies cannot be satisfied (an incomplete offline bundle), or the
	// repository is unusable (bad key, no Release file). Non-retryable.
	ErrPackageUnavailable = "PackageUnavailable"
	// ErrPackageInstallFailed: apt failed for another reason, most often a mirror
	// that could not be reached. Retryable.
	ErrPackageInstallFailed = "PackageInstallFailed"
	// ErrInvalidDaemonConfig: the host's /etc/docker/daemon.json is not a JSON
	// object. Non-retryable: a person has to look at the file.
	ErrInvalidDaemonConfig = "InvalidDaemonConfig"
	// ErrEngineNotReady: the engine did not answer after it was started, or its API
	// could not be reached over SSH. Retryable.
	ErrEngineNotReady = "EngineNotReady"
)

// Docker engine package names.
const (
	pkgDistroEngine = "docker.io"
	pkgRepoEngine   = "docker-ce"
	pkgRepoCLI      = "docker-ce-cli"
	pkgRepoRuntime  = "containerd.io"
)

// Paths on the hosts.
const (
	// DefaultDockerMirror is where Docker's apt repositories live; a mirror has the
	// same layout (MIRROR/debian, MIRROR/ubuntu).
	DefaultDockerMirror = "https://download.docker.com/linux"
	dockerKeyring       = "/etc/apt/keyrings/docker.asc"
	dockerSourcesList   = "/etc/apt/sources.list.d/docker.list"
	// offlineStaging is where offline bundles are uploaded, relative to the login
	// user's home directory (SFTP writes as that user, also on sudo hosts).
	offlineStaging = ".cache/clusterflow/docker-offline"
	// aptLockTimeout is how long apt waits for the dpkg lock before giving up
	// (DPkg::Lock::Timeout); then the activity is retried after lockRetryDelay.
	aptLockTimeout = 60
)

// Docker installs, configures and starts Docker engines on hosts. Its exported
// methods are activities: DetectOS, InstallDockerPackages, ConfigureDockerDaemon,
// AddDockerUsers, StartDockerEngine and VerifyDockerEngine.
type Docker struct {
	pool           *Pool
	heartbeatEvery time.Duration
	// lockRetryDelay is the NextRetryDelay of an ErrPackageManagerBusy error.
	lockRetryDelay time.Duration
	// Paths on the host; tests point them into a temporary directory.
	daemonJSON   string
	dockerSocket string
}

// NewDocker returns the Docker activities, using pool for connections.
func NewDocker(pool *Pool) *Docker {
	return &Docker{
		pool:           pool,
		heartbeatEvery: 5 * time.Second,
		lockRetryDelay: 15 * time.Second,
		daemonJSON:     "/etc/docker/daemon.json",
		dockerSocket:   DockerSocket,
	}
}

// DockerHostRequest names the host of an activity that needs nothing else.
type DockerHostRequest struct {
	Host playbooks.Host `json:"host"`
}

// DockerProgress is the heartbeat detail of the Docker activities. Changed survives
// into the next attempt (it is read back from the last heartbeat), so that an
// attempt that finds the work done by a killed predecessor still reports a change.
type DockerProgress struct {
	Phase      string `json:"phase"`
	Changed    bool   `json:"changed,omitempty"`
	ElapsedMs  int64  `json:"elapsedMs"`
	LastLine   string `json:"lastLine,omitempty"`
	BytesDone  int64  `json:"bytesDone,omitempty"`
	BytesTotal int64  `json:"bytesTotal,omitempty"`
}

// ---------------------------------------------------------------------------
// DetectOS

// OSInfo is what DetectOS found on a host.
type OSInfo struct {
	ID        string   `json:"id"`               // os-release ID: debian, ubuntu, raspbian...
	IDLike    []string `json:"idLike,omitempty"` // os-release ID_LIKE
	VersionID string   `json:"versionId,omitempty"`
	// Codename is the release codename Docker's repository is organised by
	// (bookworm, jammy); for an Ubuntu derivative, the Ubuntu release it is based on.
	Codename string `json:"codename,omitempty"`
	Name     string `json:"name"` // PRETTY_NAME, for messages
	// Family is "debian" or "ubuntu": the directory of Docker's repository to use.
	Family string `json:"family"`
	Arch   string `json:"arch"` // dpkg architecture: amd64, arm64...
}

// detectScript prints the os-release file, a separator, the dpkg architecture, a
// separator and "apt" when apt-get and dpkg-query exist.
const detectScript = `for f in /etc/os-release /usr/lib/os-release; do
  if [ -r "$f" ]; then cat "$f"; break; fi
done
echo
echo @@clusterflow@@
dpkg --print-architecture 2>/dev/null || :
echo @@clusterflow@@
if command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then echo apt; fi`

// DetectOS reads /etc/os-release and the dpkg architecture of req.Host. Hosts other
// than Debian, Ubuntu and their derivatives get a non-retryable ErrUnsupportedOS.
func (d *Docker) DetectOS(ctx context.Context, req DockerHostRequest) (OSInfo, error) {
	op, done := d.begin(ctx, req.Host)
	defer done()
	r, err := op.run(ctx, "detect", op.script(detectScript))
	if err != nil {
		return OSInfo{}, err
	}
	if r.exitCode != 0 {
		return OSInfo{}, remoteFailed(req.Host, "reading /etc/os-release failed (exit %d): %s", r.exitCode, strings.TrimSpace(r.stderr))
	}
	parts := strings.Split(r.stdout, "@@clusterflow@@\n")
	if len(parts) != 3 {
		return OSInfo{}, remoteFailed(req.Host, "unexpected output while detecting the OS: %q", r.stdout)
	}
	info, problem := osInfoFrom(parseOSRelease(parts[0]), strings.TrimSpace(parts[1]), strings.TrimSpace(parts[2]) == "apt")
	if problem != "" {
		return info, hostError(req.Host, ErrUnsupportedOS, false, "%s", problem)
	}
	return info, nil
}

// parseOSRelease reads os-release(5) text: KEY=value lines, values bare or quoted
// with shell-like quoting; comments and blank lines are skipped.
func parseOSRelease(text string) map[string]string {
	kv := map[string]string{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !envKeyRE.MatchString(k) {
			continue
		}
		kv[k] = unquoteOSRelease(v)
	}
	return kv
}

func unquoteOSRelease(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return v[1 : len(v)-1]
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			if v[i] == '\\' && i+1 < len(v) && strings.ContainsRune("\"\\$`", rune(v[i+1])) {
				i++
			}
			b.WriteByte(v[i])
		}
		return b.String()
	}
	return v
}

// osInfoFrom decides whether the host is supported. problem is empty when it is,
// else the reason, naming what was found.
func osInfoFrom(kv map[string]string, arch string, hasApt bool) (info OSInfo, problem string) {
	info = OSInfo{
		ID:        strings.ToLower(kv["ID"]),
		IDLike:    strings.Fields(strings.ToLower(kv["ID_LIKE"])),
		VersionID: kv["VERSION_ID"],
		Name:      kv["PRETTY_NAME"],
		Arch:      arch,
	}
	if info.Name == "" {
		info.Name = strings.TrimSpace(kv["NAME"] + " " + kv["VERSION"])
	}
	if len(kv) == 0 || info.ID == "" {
		return info, "unsupported operating system: no /etc/os-release (or no ID in it); InstallDocker supports Debian, Ubuntu and their derivatives"
	}
	found := fmt.Sprintf("%q (ID=%s", info.Name, info.ID)
	if len(info.IDLike) > 0 {
		found += ", ID_LIKE=" + strings.Join(info.IDLike, " ")
	}
	found += ")"
	switch {
	case info.ID == "debian" || info.ID == "ubuntu":
		info.Family = info.ID
	case slices.Contains(info.IDLike, "ubuntu"):
		info.Family = "ubuntu"
	case slices.Contains(info.IDLike, "debian"):
		info.Family = "debian"
	default:
		return info, "unsupported operating system " + found + "; InstallDocker supports Debian, Ubuntu and their derivatives"
	}
	if !hasApt {
		return info, "operating system " + found + " has no apt-get or dpkg-query, which InstallDocker needs"
	}
	if info.Arch == "" {
		return info, "operating system " + found + ": dpkg --print-architecture printed nothing"
	}
	switch {
	case info.Family == "ubuntu" && kv["UBUNTU_CODENAME"] != "":
		info.Codename = kv["UBUNTU_CODENAME"]
	case info.ID != "debian" && info.Family == "debian" && kv["DEBIAN_CODENAME"] != "":
		info.Codename = kv["DEBIAN_CODENAME"]
	default:
		info.Codename = kv["VERSION_CODENAME"]
	}
	return info, ""
}

// ---------------------------------------------------------------------------
// InstallDockerPackages

// PackagesRequest is the input of InstallDockerPackages.
type PackagesRequest struct {
	Host playbooks.Host `json:"host"`
	OS   OSInfo         `json:"os"`
	// Source is playbooks.DockerFromDistro (also when empty), DockerFromRepo or
	// DockerFromOffline.
	Source string `json:"source,omitempty"`
	// Version pins the engine package: an exact apt version, or an upstream
	// version that apt's versions start with ("20.10.24" for
	// "20.10.24+dfsg1-1+deb12u1", "27.3.1" for "5:27.3.1-1~debian.12~bookworm").
	Version string `json:"version,omitempty"`
	// Mirror replaces DefaultDockerMirror for DockerFromRepo.
	Mirror string `json:"mirror,omitempty"`
	// Packages is the offline bundle: a directory of .deb files on the worker.
	Packages string `json:"packages,omitempty"`
}

// PackageVersion is one installed package.
type PackageVersion struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// PackagesResult says what InstallDockerPackages did.
type PackagesResult struct {
	Changed bool `json:"changed"`
	// Installed are the engine packages now on the host, with their versions.
	Installed []PackageVersion `json:"installed"`
	// Repaired is set when an interrupted dpkg run had to be finished first.
	Repaired bool   `json:"repaired,omitempty"`
	Message  string `json:"message"`
}

// InstallDockerPackages installs the Docker engine packages from req.Source unless
// they are installed already (at the pinned version, when one is given).
//
// A dpkg run that was interrupted (a killed connection kills apt with it) is
// finished first with dpkg --configure -a. apt waits up to a minute for the dpkg
// lock; after that the activity fails with a retryable ErrPackageManagerBusy that
// asks for a later retry.
func (d *Docker) InstallDockerPackages(ctx context.Context, req PackagesRequest) (PackagesResult, error) {
	h := req.Host
	op, done := d.begin(ctx, h)
	defer done()

	var check, pinned []string // packages that must be installed; those the pin applies to
	var bundle *offlineBundle
	switch req.Source {
	case "", playbooks.DockerFromDistro:
		check, pinned = []string{pkgDistroEngine}, []string{pkgDistroEngine}
	case playbooks.DockerFromRepo:
		check, pinned = []string{pkgRepoEngine, pkgRepoCLI, pkgRepoRuntime}, []string{pkgRepoEngine, pkgRepoCLI}
		if req.OS.Codename == "" {
			return PackagesResult{}, hostError(h, ErrUnsupportedOS, false, "%s has no release codename (VERSION_CODENAME), which Docker's repository needs; use source distro or offline", req.OS.Name)
		}
	case playbooks.DockerFromOffline:
		var problem string
		bundle, problem = readBundle(req.Packages, req.Version, req.OS.Arch)
		if problem != "" {
			return PackagesResult{}, hostInvalid(h, "offline bundle: %s", problem)
		}
		check, pinned = bundle.enginePackages(), []string{bundle.engine.Pkg}
	default:
		return PackagesResult{}, hostInvalid(h, "unknown docker source %q", req.Source)
	}
	if err := checkPackageVersion(req.Version); err != nil {
		return PackagesResult{}, hostInvalid(h, "%v", err)
	}
	pin := func(pkg string) string {
		if slices.Contains(pinned, pkg) {
			return req.Version
		}
		return ""
	}

	// Step 1. Finish an interrupted dpkg run.
	repaired, err := d.repairDpkg(ctx, op)
	if err != nil {
		return PackagesResult{}, err
	}

	// Step 2. Check: done already?
	have, err := d.installedPackages(ctx, op, check)
	if err != nil {
		return PackagesResult{}, err
	}
	missing := missingPackages(have, check, pin)
	if len(missing) == 0 {
		res := PackagesResult{Changed: op.changedSoFar(), Repaired: repaired, Installed: versionsOf(have, check)}
		switch {
		case repaired:
			res.Message = "installed " + describeInstalled(res.Installed) + " (" + sourceName(req.Source) + "; finished an interrupted dpkg run" + attemptNote(ctx) + ")"
		case res.Changed:
			res.Message = "installed " + describeInstalled(res.Installed) + " (" + sourceName(req.Source) + "; completed by an earlier attempt" + attemptNote(ctx) + ")"
		default:
			res.Message = describeInstalled(res.Installed) + " already installed"
		}
		return res, nil
	}

	// Step 3. Act.
	switch {
	case bundle != nil:
		err = d.installOffline(ctx, op, bundle, repaired)
	case req.Source == playbooks.DockerFromRepo:
		if err = d.configureDockerRepo(ctx, op, req); err == nil {
			err = d.installFromArchive(ctx, op, check, pin, repaired)
		}
	default:
		err = d.installFromArchive(ctx, op, check, pin, repaired)
	}
	if err != nil {
		return PackagesResult{}, err
	}

	// Step 4. Check again: apt's exit status alone is not proof.
	have, err = d.installedPackages(ctx, op, check)
	if err != nil {
		return PackagesResult{}, err
	}
	if missing := missingPackages(have, check, pin); len(missing) > 0 {
		return PackagesResult{}, hostError(h, ErrPackageInstallFailed, true, "apt finished but %s is still not installed%s", strings.Join(missing, ", "), pinNote(req.Version))
	}
	res := PackagesResult{Changed: true, Repaired: repaired, Installed: versionsOf(have, check)}
	res.Message = "installed " + describeInstalled(res.Installed) + " (" + sourceName(req.Source) + attemptNote(ctx) + ")"
	if repaired {
		res.Message = "installed " + describeInstalled(res.Installed) + " (" + sourceName(req.Source) + "; after finishing an interrupted dpkg run" + attemptNote(ctx) + ")"
	}
	return res, nil
}

// attemptNote names the activity attempt when it is not the first.
func attemptNote(ctx context.Context) string {
	if !activity.IsActivity(ctx) {
		return ""
	}
	if n := activity.GetInfo(ctx).Attempt; n > 1 {
		return fmt.Sprintf("; attempt %d", n)
	}
	return ""
}

func sourceName(s string) string {
	if s == "" {
		return playbooks.DockerFromDistro
	}
	return s
}

func pinNote(version string) string {
	if version == "" {
		return ""
	}
	return " at version " + version
}

func describeInstalled(pkgs []PackageVersion) string {
	parts := make([]string, len(pkgs))
	for i, p := range pkgs {
		parts[i] = p.Name + " " + p.Version
	}
	return strings.Join(parts, ", ")
}

// debVersionRE is what a Debian version (or a prefix of one) may contain.
var debVersionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+~:-]*$`)

func checkPackageVersion(v string) error {
	if v != "" && !debVersionRE.MatchString(v) {
		return fmt.Errorf("docker version %q is not a Debian package version", v)
	}
	return nil
}

// versionMatches reports whether the installed or available apt version v satisfies
// the pin want: equal, equal without the epoch, or starting with want followed by
// one of the separators Debian versions use after the upstream part.
func versionMatches(v, want string) bool {
	if want == "" || v == want {
		return true
	}
	if _, rest, ok := strings.Cut(v, ":"); ok && !strings.Contains(want, ":") {
		v = rest
	}
	if v == want {
		return true
	}
	return strings.HasPrefix(v, want) && strings.ContainsRune("-+~", rune(v[len(want)]))
}

// pkgState is one row of dpkg-query.
type pkgState struct {
	status  string // e.g. "install ok installed", "install reinstreq half-installed"
	version string
}

func (p pkgState) installed() bool {
	f := strings.Fields(p.status)
	return len(f) == 3 && f[2] == "installed"
}

// installedPackages asks dpkg about pkgs. Unknown packages are simply absent from
// the map.
func (d *Docker) installedPackages(ctx context.Context, op *dockerOp, pkgs []string) (map[string]pkgState, error) {
	argv := append([]string{"dpkg-query", "-W", "-f", `${Package}\t${Status}\t${Version}\n`, "--"}, pkgs...)
	r, err := op.run(ctx, "check", remoteExec{argv: argv})
	if err != nil {
		return nil, err
	}
	// Exit 1 means "some package is unknown", which is an answer.
	if r.exitCode > 1 {
		return nil, remoteFailed(op.host, "dpkg-query failed (exit %d): %s", r.exitCode, strings.TrimSpace(r.stderr))
	}
	return parseDpkgQuery(r.stdout), nil
}

func parseDpkgQuery(out string) map[string]pkgState {
	m := map[string]pkgState{}
	for line := range strings.Lines(out) {
		f := strings.Split(strings.TrimRight(line, "\n"), "\t")
		if len(f) != 3 || f[0] == "" {
			continue
		}
		name, _, _ := strings.Cut(f[0], ":") // a multi-arch qualifier, if any
		m[name] = pkgState{status: f[1], version: f[2]}
	}
	return m
}

// missingPackages lists the packages of check that are not installed, or not at
// the version pin(pkg) asks for.
func missingPackages(have map[string]pkgState, check []string, pin func(string) string) []string {
	var missing []string
	for _, p := range check {
		st, ok := have[p]
		if !ok || !st.installed() || !versionMatches(st.version, pin(p)) {
			missing = append(missing, p)
		}
	}
	return missing
}

func versionsOf(have map[string]pkgState, pkgs []string) []PackageVersion {
	out := make([]PackageVersion, 0, len(pkgs))
	for _, p := range pkgs {
		out = append(out, PackageVersion{Name: p, Version: have[p].version})
	}
	return out
}

// auditScript prints "repair" and dpkg's complaints when a dpkg run was
// interrupted: packages left unpacked, half-installed or half-configured, or
// journal entries not yet merged into the status file.
const auditScript = `out=$(dpkg --audit 2>&1)
pending=$(ls -A /var/lib/dpkg/updates 2>/dev/null)
if [ -n "$out" ] || [ -n "$pending" ]; then echo repair; printf '%s\n' "$out" | head -n 20; fi`

// repairDpkg finishes an interrupted dpkg run: dpkg --configure -a configures what
// was unpacked; packages left half-installed, and dependencies never unpacked, are
// dealt with by the apt run that follows (apt-get --fix-broken install). It reports
// whether a repair was needed.
func (d *Docker) repairDpkg(ctx context.Context, op *dockerOp) (bool, error) {
	r, err := op.run(ctx, "check", op.script(auditScript))
	if err != nil {
		return false, err
	}
	if !strings.HasPrefix(r.stdout, "repair") {
		return false, nil
	}
	op.acting("repair")
	r, err = op.run(ctx, "repair", remoteExec{
		argv: []string{"dpkg", "--force-confdef", "--force-confold", "--configure", "-a"},
		env:  map[string]string{"DEBIAN_FRONTEND": "noninteractive"},
	})
	if err != nil {
		return false, err
	}
	if r.exitCode != 0 {
		if lockBusyRE.MatchString(r.stderr + r.stdout) {
			return false, d.busy(op.host, "dpkg --configure -a", r)
		}
		// Dependency problems left by a half-installed package: the apt run with
		// --fix-broken that follows sorts them out, or fails with a clear message.
		activity.GetLogger(ctx).Warn("dpkg --configure -a failed; continuing with apt --fix-broken",
			"host", op.host.Name, "exit", r.exitCode, "stderr", lastOutputLine(r.stderr))
	}
	return true, nil
}

// aptBase is the start of every apt-get command line: no questions, wait for the
// dpkg lock, keep locally changed configuration files.
func aptBase(sub string) []string {
	argv := []string{"apt-get", sub, "-y", "-q",
		"-o", fmt.Sprintf("DPkg::Lock::Timeout=%d", aptLockTimeout),
		"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"}
	if sub == "install" {
		argv = append(argv, "--no-install-recommends")
	}
	return argv
}

var aptEnv = map[string]string{"DEBIAN_FRONTEND": "noninteractive"}

// installFromArchive runs apt-get update and apt-get install for pkgs, resolving
// version pins against what the archive offers. After a repair (fixBroken), apt
// first completes what the interrupted run left with unmet dependencies: apt
// refuses to install anything else until that is done.
func (d *Docker) installFromArchive(ctx context.Context, op *dockerOp, pkgs []string, pin func(string) string, fixBroken bool) error {
	h := op.host
	op.acting("apt-get update")
	r, err := op.run(ctx, "apt-get update", remoteExec{argv: aptBase("update"), env: aptEnv})
	if err != nil {
		return err
	}
	if r.exitCode != 0 {
		return d.aptError(h, "apt-get update", r)
	}
	if fixBroken {
		op.acting("apt-get --fix-broken install")
		r, err = op.run(ctx, "apt-get --fix-broken install", remoteExec{argv: append(aptBase("install"), "--fix-broken"), env: aptEnv})
		if err != nil {
			return err
		}
		if r.exitCode != 0 {
			return d.aptError(h, "apt-get --fix-broken install", r)
		}
	}
	args := make([]string, 0, len(pkgs))
	for _, p := range pkgs {
		want := pin(p)
		if want == "" {
			args = append(args, p)
			continue
		}
		v, err := d.resolveVersion(ctx, op, p, want)
		if err != nil {
			return err
		}
		args = append(args, p+"="+v)
	}
	op.acting("apt-get install")
	r, err = op.run(ctx, "apt-get install", remoteExec{argv: append(aptBase("install"), args...), env: aptEnv})
	if err != nil {
		return err
	}
	if r.exitCode != 0 {
		return d.aptError(h, "apt-get install "+strings.Join(args, " "), r)
	}
	return nil
}

// resolveVersion finds the archive version of pkg that the pin want stands for.
func (d *Docker) resolveVersion(ctx context.Context, op *dockerOp, pkg, want string) (string, error) {
	r, err := op.run(ctx, "apt-cache madison", remoteExec{argv: []string{"apt-cache", "madison", pkg}})
	if err != nil {
		return "", err
	}
	versions := parseMadison(r.stdout)
	v, ok := pickVersion(versions, want)
	if !ok {
		avail := "none"
		if len(versions) > 0 {
			avail = strings.Join(versions[:min(len(versions), 8)], ", ")
		}
		return "", hostError(op.host, ErrPackageUnavailable, false, "%s version %s is not available from the configured sources (available: %s)", pkg, want, avail)
	}
	return v, nil
}

// parseMadison reads `apt-cache madison` output (" pkg | version | source"), newest
// version first, without repeats.
func parseMadison(out string) []string {
	var vs []string
	for line := range strings.Lines(out) {
		f := strings.Split(line, "|")
		if len(f) < 3 {
			continue
		}
		v := strings.TrimSpace(f[1])
		if v != "" && !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	return vs
}

// pickVersion returns the exact match of want, else the first (newest) version
// that versionMatches it.
func pickVersion(versions []string, want string) (string, bool) {
	if slices.Contains(versions, want) {
		return want, true
	}
	for _, v := range versions {
		if versionMatches(v, want) {
			return v, true
		}
	}
	return "", false
}

var (
	lockBusyRE = regexp.MustCompile(`Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock (the administration )?directory|lock was locked by another process|status database area is locked|is another process using it\?`)
	// aptFinalRE: errors that the same input would hit again.
	aptFinalRE = regexp.MustCompile(`Unable to locate package|has no installation candidate|Version '[^']*' for '[^']*' was not found|Couldn't find any package|Unmet dependencies|unmet dependencies|NO_PUBKEY|is not signed|does not have a Release file|Release file [^\n]* is not valid|The following signatures couldn't be verified|Malformed entry|conflicting values set for option Signed-By`)
)

// aptError types a failed apt or dpkg run from its output.
func (d *Docker) aptError(h playbooks.Host, what string, r execResult) error {
	out := r.stderr + "\n" + r.stdout
	msg := fmt.Sprintf("%s failed (exit %d): %s", what, r.exitCode, aptSummary(out))
	switch {
	case lockBusyRE.MatchString(out):
		return d.busy(h, what, r)
	case aptFinalRE.MatchString(out):
		return hostError(h, ErrPackageUnavailable, false, "%s", msg)
	default:
		return hostError(h, ErrPackageInstallFailed, true, "%s", msg)
	}
}

// busy is the error for a dpkg lock held by someone else: retried after a delay.
func (d *Docker) busy(h playbooks.Host, what string, r execResult) error {
	msg := fmt.Sprintf("%s: the package manager is busy (the dpkg lock was held for over %d s by another apt or dpkg run); will retry: %s",
		what, aptLockTimeout, aptSummary(r.stderr+"\n"+r.stdout))
	return temporal.NewApplicationErrorWithOptions(hostLabel(h)+": "+msg, ErrPackageManagerBusy,
		temporal.ApplicationErrorOptions{NextRetryDelay: d.lockRetryDelay})
}

// aptSummary picks the lines that say what went wrong: apt's "E:" lines, else the
// last line of output.
func aptSummary(out string) string {
	var errs []string
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "E:") || strings.HasPrefix(line, "dpkg: error") {
			errs = append(errs, line)
		}
	}
	if len(errs) == 0 {
		return lastOutputLine(out)
	}
	if len(errs) > 3 {
		errs = errs[len(errs)-3:]
	}
	s := strings.Join(errs, " ")
	if len(s) > 600 {
		s = s[:600] + "…"
	}
	return s
}

// lastOutputLine is the last non-empty line of s, at most 200 bytes.
func lastOutputLine(s string) string {
	s = strings.TrimRight(s, "\n\r\t ")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// --- docker-repo -------------------------------------------------------------

// repoMirror is the mirror to use: req.Mirror without a trailing slash, or
// DefaultDockerMirror.
func repoMirror(m string) string {
	m = strings.TrimRight(strings.TrimSpace(m), "/")
	if m == "" {
		return DefaultDockerMirror
	}
	return m
}

// dockerSourcesLine is the content of docker.list for a host.
func dockerSourcesLine(mirror string, os OSInfo) string {
	return fmt.Sprintf("deb [arch=%s signed-by=%s] %s/%s %s stable\n", os.Arch, dockerKeyring, repoMirror(mirror), os.Family, os.Codename)
}

// dockerKeyURL is where the repository's signing key is fetched from.
func dockerKeyURL(mirror string, os OSInfo) string {
	return repoMirror(mirror) + "/" + os.Family + "/gpg"
}

// aptRepoScript makes a vendor's repository an apt source: the signing key fetched
// from $1 (armored) at $3, the sources line $2 in $4, each written only when it
// differs from what is there, and prints "changed" if it wrote anything. The key is
// fetched with curl or wget when present, else with apt's own downloader
// (apt-helper), which every apt system has. Exit 3: $1 is not a key. Docker's and
// HashiCorp's repositories both use it.
const aptRepoScript = `set -eu
key=$3
list=$4
install -d -m 0755 "$(dirname "$key")" "$(dirname "$list")"
tmp=$(mktemp "$key.XXXXXX")
trap 'rm -f "$tmp" "$list.clusterflow-tmp"' EXIT
if command -v curl >/dev/null 2>&1; then
  curl -fsSL --retry 3 -o "$tmp" "$1"
elif command -v wget >/dev/null 2>&1; then
  wget -q -O "$tmp" "$1"
else
  /usr/lib/apt/apt-helper download-file "$1" "$tmp" >/dev/null
fi
if ! grep -q 'BEGIN PGP PUBLIC KEY BLOCK' "$tmp"; then
  echo "the file at $1 is not an armored OpenPGP public key" >&2; exit 3
fi
changed=
if ! cmp -s "$tmp" "$key"; then chmod 0644 "$tmp"; mv -f "$tmp" "$key"; changed=1; fi
if [ "$(cat "$list" 2>/dev/null || :)" != "$(printf '%s' "$2")" ]; then
  printf '%s' "$2" >"$list.clusterflow-tmp"; chmod 0644 "$list.clusterflow-tmp"
  mv -f "$list.clusterflow-tmp" "$list"; changed=1
fi
if [ -n "$changed" ]; then echo changed; fi`

// configureDockerRepo makes Docker's repository (or its mirror) an apt source:
// ca-certificates for an https mirror, the signing key, the sources list.
func (d *Docker) configureDockerRepo(ctx context.Context, op *dockerOp, req PackagesRequest) error {
	mirror := repoMirror(req.Mirror)
	if strings.HasPrefix(mirror, "https:") {
		have, err := d.installedPackages(ctx, op, []string{"ca-certificates"})
		if err != nil {
			return err
		}
		if !have["ca-certificates"].installed() {
			if err := d.installFromArchive(ctx, op, []string{"ca-certificates"}, func(string) string { return "" }, false); err != nil {
				return err
			}
		}
	}
	op.acting("docker repository")
	r, err := op.run(ctx, "docker repository", op.script(aptRepoScript, dockerKeyURL(req.Mirror, req.OS), dockerSourcesLine(req.Mirror, req.OS), dockerKeyring, dockerSourcesList))
	if err != nil {
		return err
	}
	if r.exitCode != 0 {
		msg := fmt.Sprintf("setting up Docker's apt repository from %s failed (exit %d): %s", mirror, r.exitCode, lastOutputLine(r.stderr+"\n"+r.stdout))
		if r.exitCode == 3 {
			return hostError(op.host, ErrPackageUnavailable, false, "%s", msg)
		}
		return hostError(op.host, ErrPackageInstallFailed, true, "%s", msg)
	}
	return nil
}

// --- offline -----------------------------------------------------------------

// debFile is one .deb of an offline bundle.
type debFile struct {
	Name    string // file name in the bundle
	Pkg     string // package name, from the file name
	Version string
	Arch    string
	Path    string // on the worker
	Size    int64
	SHA256  string
}

// offlineBundle is a checked directory of .deb files.
type offlineBundle struct {
	dir    string
	files  []debFile
	engine debFile // docker-ce or docker.io
	sums   bool    // a SHA256SUMS file was checked
}

func (b *offlineBundle) enginePackages() []string {
	pkgs := []string{b.engine.Pkg}
	if b.engine.Pkg == pkgRepoEngine && slices.ContainsFunc(b.files, func(f debFile) bool { return f.Pkg == pkgRepoCLI }) {
		pkgs = append(pkgs, pkgRepoCLI)
	}
	return pkgs
}

// parseDebName splits a Debian archive file name, NAME_VERSION_ARCH.deb, where the
// version's epoch colon may be written %3a (as apt's cache does).
func parseDebName(name string) (pkg, version, arch string, ok bool) {
	base, found := strings.CutSuffix(name, ".deb")
	if !found {
		return "", "", "", false
	}
	f := strings.Split(base, "_")
	if len(f) != 3 || f[0] == "" || f[1] == "" || f[2] == "" {
		return "", "", "", false
	}
	v, err := url.PathUnescape(f[1])
	if err != nil {
		return "", "", "", false
	}
	return f[0], v, f[2], true
}

// parseSHA256SUMS reads sha256sum(1) output: "HEX  NAME" or "HEX *NAME" per line.
func parseSHA256SUMS(text string) (map[string]string, error) {
	sums := map[string]string{}
	n := 0
	for line := range strings.Lines(text) {
		n++
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sum, name, ok := strings.Cut(line, " ")
		if !ok || len(sum) != 64 {
			return nil, fmt.Errorf("SHA256SUMS line %d is not \"SHA256  FILE\": %q", n, line)
		}
		if _, err := hex.DecodeString(sum); err != nil {
			return nil, fmt.Errorf("SHA256SUMS line %d: %q is not a hex SHA-256", n, sum)
		}
		name = strings.TrimPrefix(name, " ")
		name = strings.TrimPrefix(name, "*")
		name = strings.TrimPrefix(name, "./")
		if name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("SHA256SUMS line %d: %q is not a file name in the bundle directory", n, name)
		}
		if prev, dup := sums[name]; dup && prev != strings.ToLower(sum) {
			return nil, fmt.Errorf("SHA256SUMS lists %s twice with different sums", name)
		}
		sums[name] = strings.ToLower(sum)
	}
	return sums, nil
}

// readBundle checks an offline bundle on the worker: .deb files named
// NAME_VERSION_ARCH.deb, one of them docker-ce or docker.io (at the pinned version,
// when one is given), all of the host's architecture or "all", and, when the
// directory has a SHA256SUMS file, every file listed there with that checksum.
// problem is empty when the bundle is fine.
func readBundle(dir, version, arch string) (b *offlineBundle, problem string) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Sprintf("packages %q must be an absolute directory on the worker", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Sprintf("directory %s does not exist on this worker", dir)
		}
		return nil, err.Error()
	}
	b = &offlineBundle{dir: dir}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".deb") {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			return nil, fmt.Sprintf("%s is not a regular file", filepath.Join(dir, e.Name()))
		}
		pkg, v, a, ok := parseDebName(e.Name())
		if !ok {
			return nil, fmt.Sprintf("%s is not named NAME_VERSION_ARCH.deb", e.Name())
		}
		if a != "all" && arch != "" && a != arch {
			return nil, fmt.Sprintf("%s is for %s, the host is %s", e.Name(), a, arch)
		}
		b.files = append(b.files, debFile{Name: e.Name(), Pkg: pkg, Version: v, Arch: a, Path: filepath.Join(dir, e.Name()), Size: fi.Size()})
	}
	if len(b.files) == 0 {
		return nil, fmt.Sprintf("no .deb files in %s", dir)
	}
	for _, want := range []string{pkgRepoEngine, pkgDistroEngine} {
		if i := slices.IndexFunc(b.files, func(f debFile) bool { return f.Pkg == want }); i >= 0 {
			b.engine = b.files[i]
			break
		}
	}
	if b.engine.Pkg == "" {
		return nil, fmt.Sprintf("%s has neither a %s nor a %s package", dir, pkgRepoEngine, pkgDistroEngine)
	}
	if version != "" && !versionMatches(b.engine.Version, version) {
		return nil, fmt.Sprintf("%s is version %s, not the pinned %s", b.engine.Name, b.engine.Version, version)
	}

	var listed map[string]string
	if text, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS")); err == nil {
		if listed, err = parseSHA256SUMS(string(text)); err != nil {
			return nil, err.Error()
		}
		b.sums = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err.Error()
	}
	for i := range b.files {
		f := &b.files[i]
		sum, err := fileSHA256(f.Path)
		if err != nil {
			return nil, err.Error()
		}
		f.SHA256 = sum
		if listed == nil {
			continue
		}
		want, ok := listed[f.Name]
		if !ok {
			return nil, fmt.Sprintf("%s is not listed in SHA256SUMS", f.Name)
		}
		if want != sum {
			return nil, fmt.Sprintf("%s has SHA-256 %s but SHA256SUMS says %s: the bundle is damaged", f.Name, sum, want)
		}
		if f.Pkg == b.engine.Pkg {
			b.engine.SHA256 = sum
		}
	}
	if listed != nil {
		names := make([]string, 0, len(listed))
		for name := range listed {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			if strings.HasSuffix(name, ".deb") && !slices.ContainsFunc(b.files, func(f debFile) bool { return f.Name == name }) {
				return nil, fmt.Sprintf("SHA256SUMS lists %s, which is missing from %s", name, dir)
			}
		}
	}
	return b, ""
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// installOffline uploads the bundle's .deb files that the host lacks to a staging
// directory in the login user's home, checks them by SHA-256 on the host, and
// installs them with apt pointed at an empty package list directory: apt sees no
// repository at all, so nothing is downloaded and no network is needed.
func (d *Docker) installOffline(ctx context.Context, op *dockerOp, b *offlineBundle, fixBroken bool) error {
	h := op.host
	// Packages already installed are left alone (apt would refuse to downgrade
	// them); the engine packages are always part of the install.
	names := make([]string, 0, len(b.files))
	for _, f := range b.files {
		names = append(names, f.Pkg)
	}
	have, err := d.installedPackages(ctx, op, names)
	if err != nil {
		return err
	}
	engine := b.enginePackages()
	var files []debFile
	for _, f := range b.files {
		if slices.Contains(engine, f.Pkg) || !have[f.Pkg].installed() {
			files = append(files, f)
		}
	}

	op.acting("upload")
	stage, err := d.uploadBundle(ctx, op, files)
	if err != nil {
		return err
	}

	op.acting("install")
	argv := aptBase("install")
	if fixBroken {
		// With the bundle's files named, apt can resolve what an interrupted run
		// left half done (all of it is in the bundle; nothing can be downloaded).
		argv = append(argv, "--fix-broken")
	}
	argv = append(argv, "-o", "Dir::State::Lists="+stage+"/lists")
	for _, f := range files {
		argv = append(argv, stage+"/"+f.Name)
	}
	r, err := op.run(ctx, "apt-get install", remoteExec{argv: argv, env: aptEnv})
	if err != nil {
		return err
	}
	if r.exitCode != 0 {
		return d.aptError(h, "apt-get install of the offline bundle", r)
	}
	// The staging copy is not needed any more; a failure to remove it is harmless.
	_, _ = op.run(ctx, "cleanup", remoteExec{argv: []string{"rm", "-rf", "--", stage}})
	return nil
}

// uploadBundle sends files to the staging directory over SFTP, skipping those whose
// copy on the host already has the right checksum, then verifies every file's
// checksum on the host. It returns the staging directory's absolute path.
func (d *Docker) uploadBundle(ctx context.Context, op *dockerOp, files []debFile) (string, error) {
	h := op.host
	fa := &Files{pool: d.pool}
	client, closeSFTP, err := fa.sftpClient(ctx, h)
	if err != nil {
		return "", err
	}
	defer closeSFTP()
	home, err := client.Getwd()
	if err != nil {
		return "", fa.sftpError(ctx, h, "finding the home directory", err)
	}
	stage := path.Join(home, offlineStaging)
	if err := client.MkdirAll(path.Join(stage, "lists", "partial")); err != nil {
		return "", fa.sftpError(ctx, h, "creating "+stage, err)
	}
	if err := client.Chmod(stage, 0o700); err != nil {
		return "", fa.sftpError(ctx, h, "chmod "+stage, err)
	}

	remote, err := d.remoteSums(ctx, op, stage, files)
	if err != nil {
		return "", err
	}
	var send []debFile
	for _, f := range files {
		if remote[f.Name] != f.SHA256 {
			send = append(send, f)
		}
	}
	prog := &uploadProgress{}
	for _, f := range send {
		prog.total += f.Size
	}
	op.setUpload(prog)
	defer op.setUpload(nil)
	for _, f := range send {
		tmp := path.Join(stage, "."+f.Name+".clusterflow-tmp-"+randomSuffix())
		src := &localContent{path: f.Path, size: f.Size, sum: f.SHA256}
		if err := fa.writeTemp(ctx, h, client, tmp, src, prog, nil, 0o644); err != nil {
			return "", err
		}
		if err := client.PosixRename(tmp, path.Join(stage, f.Name)); err != nil {
			fa.removeTemp(ctx, h, client, tmp)
			return "", fa.sftpError(ctx, h, "renaming "+tmp, err)
		}
	}

	// Verify all of them: also those skipped, since apt installs what is there now.
	remote, err = d.remoteSums(ctx, op, stage, files)
	if err != nil {
		return "", err
	}
	for _, f := range files {
		if remote[f.Name] != f.SHA256 {
			return "", hostError(h, ErrChecksumMismatch, true, "after uploading %s to %s the host's copy has SHA-256 %q, not %s", f.Name, stage, remote[f.Name], f.SHA256)
		}
	}
	return stage, nil
}

// remoteSums returns the SHA-256 of the named files in dir on the host; files that
// are missing are left out.
func (d *Docker) remoteSums(ctx context.Context, op *dockerOp, dir string, files []debFile) (map[string]string, error) {
	argv := []string{"sha256sum", "--"}
	for _, f := range files {
		argv = append(argv, f.Name)
	}
	// As the login user: the staging directory is theirs.
	r, err := op.runAs(ctx, "verify", remoteExec{argv: argv, dir: dir}, false)
	if err != nil {
		return nil, err
	}
	sums := map[string]string{}
	for line := range strings.Lines(r.stdout) {
		sum, name, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && len(sum) == 64 {
			sums[strings.TrimPrefix(strings.TrimSpace(name), "*")] = sum
		}
	}
	return sums, nil
}

// ---------------------------------------------------------------------------
// ConfigureDockerDaemon

// DaemonConfigRequest is the input of ConfigureDockerDaemon.
type DaemonConfigRequest struct {
	Host playbooks.Host `json:"host"`
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

// readDaemonScript prints the file on stdout and, last on stderr, "absent" or
// "present SIZE" (stderr, because stdout keeps only a tail of a large file).
const readDaemonScript = `if [ -e "$1" ]; then cat -- "$1" && echo "present $(wc -c <"$1")" >&2; else echo absent >&2; fi`

// maxInlineFile is the largest file read through a command's output, which keeps
// only a 4 KiB tail; larger ones are read over SFTP.
const maxInlineFile = 3 << 10

// writeDaemonScript replaces $1 with $2 atomically, keeping the old file's mode and
// owner (0644 root for a new file).
const writeDaemonScript = `set -eu
umask 022
mkdir -p -- "$(dirname -- "$1")"
tmp="$1.clusterflow-tmp"
trap 'rm -f -- "$tmp"' EXIT
printf '%s' "$2" >"$tmp"
if [ -e "$1" ]; then chmod --reference="$1" -- "$tmp"; chown --reference="$1" -- "$tmp" 2>/dev/null || :; fi
sync -- "$tmp" 2>/dev/null || :
mv -f -- "$tmp" "$1"`

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
	r, err := op.run(ctx, "read", op.script(readDaemonScript, d.daemonJSON))
	if err != nil {
		return res, err
	}
	content := r.stdout
	word, sizeText, _ := strings.Cut(lastOutputLine(r.stderr), " ")
	if r.exitCode != 0 || (word != "present" && word != "absent") {
		return res, remoteFailed(h, "cannot read %s (exit %d): %s", d.daemonJSON, r.exitCode, strings.TrimSpace(r.stderr))
	}
	if size, _ := strconv.Atoi(strings.TrimSpace(sizeText)); size > maxInlineFile {
		if content, err = d.readFileSFTP(ctx, h, d.daemonJSON); err != nil {
			return res, err
		}
	}
	merged, keys, err := mergeDaemonConfig([]byte(content), req.Config)
	if err != nil {
		return res, hostError(h, ErrInvalidDaemonConfig, false, "%s on the host: %v; fix or remove the file", d.daemonJSON, err)
	}
	if len(keys) == 0 {
		return res, nil
	}
	op.acting("write")
	r, err = op.run(ctx, "write", op.script(writeDaemonScript, d.daemonJSON, string(merged)))
	if err != nil {
		return res, err
	}
	if r.exitCode != 0 {
		return res, remoteFailed(h, "writing %s failed (exit %d): %s", d.daemonJSON, r.exitCode, strings.TrimSpace(r.stderr))
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

// readFileSFTP reads a remote file as the login user.
func (d *Docker) readFileSFTP(ctx context.Context, h playbooks.Host, p string) (string, error) {
	fa := &Files{pool: d.pool}
	client, closeSFTP, err := fa.sftpClient(ctx, h)
	if err != nil {
		return "", err
	}
	defer closeSFTP()
	f, err := client.Open(p)
	if err != nil {
		return "", fa.sftpError(ctx, h, "opening "+p, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 16<<20))
	if err != nil {
		return "", fa.sftpError(ctx, h, "reading "+p, err)
	}
	return string(b), nil
}

// ---------------------------------------------------------------------------
// AddDockerUsers

// DockerUsersRequest is the input of AddDockerUsers.
type DockerUsersRequest struct {
	Host  playbooks.Host `json:"host"`
	Users []string       `json:"users,omitempty"`
}

// DockerUsersResult says what AddDockerUsers did.
type DockerUsersResult struct {
	Changed bool     `json:"changed"`
	Added   []string `json:"added,omitempty"` // users that joined the docker group now
}

// usersScript adds "$@" to the docker group. It checks every user first and
// changes nothing when one is unknown (exit 3, "missing NAME" lines); then it
// prints "group" if it created the group and "added NAME" for each user added.
const usersScript = `missing=
for u in "$@"; do id -u "$u" >/dev/null 2>&1 || missing="$missing $u"; done
if [ -n "$missing" ]; then echo "missing$missing"; exit 3; fi
set -e
if ! getent group docker >/dev/null; then groupadd --system docker; echo group; fi
for u in "$@"; do
  case " $(id -nG "$u") " in
    *" docker "*) ;;
    *) usermod -a -G docker "$u"; echo "added $u" ;;
  esac
done`

// userNameRE is what AddDockerUsers accepts as a user name.
var userNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$`)

// AddDockerUsers makes every user of req.Users a member of the docker group (which
// it creates if the packages did not). Users already in it are left alone; an
// unknown user is a non-retryable ErrInvalidInput and nobody is changed.
//
// Group membership is read at login: a user's SSH connections opened before this
// do not have the group (VerifyDockerEngine opens a fresh one for non-root users).
func (d *Docker) AddDockerUsers(ctx context.Context, req DockerUsersRequest) (DockerUsersResult, error) {
	h := req.Host
	if len(req.Users) == 0 {
		return DockerUsersResult{}, nil
	}
	for _, u := range req.Users {
		if !userNameRE.MatchString(u) {
			return DockerUsersResult{}, hostInvalid(h, "%q is not a user name", u)
		}
	}
	op, done := d.begin(ctx, h)
	defer done()
	op.acting("users")
	r, err := op.run(ctx, "users", op.script(usersScript, req.Users...))
	if err != nil {
		return DockerUsersResult{}, err
	}
	if r.exitCode == 3 {
		users := strings.Fields(strings.TrimPrefix(strings.TrimSpace(r.stdout), "missing"))
		return DockerUsersResult{}, hostInvalid(h, "no such user on the host: %s; create the user first", strings.Join(users, ", "))
	}
	var res DockerUsersResult
	for line := range strings.Lines(r.stdout) {
		line = strings.TrimSpace(line)
		switch {
		case line == "group":
			res.Changed = true
		case strings.HasPrefix(line, "added "):
			res.Changed = true
			res.Added = append(res.Added, strings.TrimPrefix(line, "added "))
		}
	}
	if r.exitCode != 0 {
		return res, remoteFailed(h, "adding users to the docker group failed (exit %d): %s", r.exitCode, strings.TrimSpace(r.stderr))
	}
	return res, nil
}

// ---------------------------------------------------------------------------
// StartDockerEngine

// Ways an engine is kept running, as StartEngineResult.Manager reports them.
const (
	EngineBySystemd    = "systemd"             // systemctl enable --now docker
	EngineBySupervisor = "clusterflow-service" // /etc/clusterflow/services.d/dockerd (lab nodes)
	EngineBySysv       = "sysv"                // service docker start (/etc/init.d/docker)
)

// StartEngineRequest is the input of StartDockerEngine.
type StartEngineRequest struct {
	Host playbooks.Host `json:"host"`
	// Restart a running engine: its configuration changed.
	Restart bool `json:"restart,omitempty"`
}

// StartEngineResult says what StartDockerEngine did.
type StartEngineResult struct {
	Changed bool   `json:"changed"`
	Manager string `json:"manager"`
	// Action is what was done: "started", "restarted", "enabled", "waited" (the
	// supervisor was already (re)starting it), or "" (running, nothing to do).
	Action string `json:"action,omitempty"`
}

// engineStateScript reports, as KEY=VALUE lines: manager (systemd, clusterflow-
// service, sysv or none), dockerd (its path), enabled and active (yes or no), stale
// (yes when the daemon.json $2 is newer than the running engine, or when the
// engine's binary was replaced under it by a package upgrade: a restart that is
// due, or that a failed earlier run did not get to) and answers (yes when the engine answers on
// its socket, $1).
const engineStateScript = `m=none
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then m=systemd
elif [ -d /etc/clusterflow/services.d ]; then m=clusterflow-service
elif [ -x /etc/init.d/docker ] && command -v service >/dev/null 2>&1; then m=sysv
fi
echo "manager=$m"
echo "dockerd=$(command -v dockerd 2>/dev/null || :)"
enabled=no; active=no
case $m in
systemd)
  [ "$(systemctl is-enabled docker 2>/dev/null)" = enabled ] && enabled=yes
  systemctl is-active --quiet docker && active=yes ;;
clusterflow-service)
  [ -x /etc/clusterflow/services.d/dockerd ] && enabled=yes
  pid=$(cat /run/clusterflow/services/dockerd.pid 2>/dev/null) && kill -0 "$pid" 2>/dev/null && active=yes ;;
sysv)
  enabled=yes
  service docker status >/dev/null 2>&1 && active=yes ;;
esac
echo "enabled=$enabled"; echo "active=$active"
stale=no
if [ "$active" = yes ] && [ -e "$2" ] && pid=$(cat /var/run/docker.pid 2>/dev/null) && [ -r "/proc/$pid/stat" ]; then
  btime=$(awk '/^btime/ {print $2}' /proc/stat)
  ticks=$(awk '{print $22}' "/proc/$pid/stat")
  hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
  # Both clocks are whole seconds and btime may be a second off: 2 s of slack.
  if [ "$(stat -c %Y "$2")" -gt "$((btime + ticks / hz + 2))" ]; then stale=yes; fi
fi
# An upgraded package replaced the binary under the running engine.
if [ "$active" = yes ] && pid=$(cat /var/run/docker.pid 2>/dev/null); then
  case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in *" (deleted)") stale=yes ;; esac
fi
echo "stale=$stale"
answers=no
if command -v docker >/dev/null 2>&1; then
  docker -H "unix://$1" version --format '{{.Server.Version}}' >/dev/null 2>&1 && answers=yes
elif [ -S "$1" ]; then answers=yes
fi
echo "answers=$answers"`

// waitEngineScript waits up to $2 half-seconds until the engine answers on $1.
const waitEngineScript = `i=0
while [ "$i" -lt "$2" ]; do
  if command -v docker >/dev/null 2>&1; then
    docker -H "unix://$1" version --format '{{.Server.Version}}' 2>/dev/null && exit 0
  elif [ -S "$1" ]; then exit 0
  fi
  sleep 0.5; i=$((i+1))
done
exit 1`

// supervisedStartScript writes the service file of the node supervisor ($1 is
// dockerd's path), through clusterflow-service when it is installed, and waits
// until the supervisor has started it.
const supervisedStartScript = `set -eu
if command -v clusterflow-service >/dev/null 2>&1; then exec clusterflow-service start dockerd "$1"; fi
f=/etc/clusterflow/services.d/dockerd
printf '#!/bin/sh\n# written by clusterflow\nexec %s\n' "$1" >"$f.clusterflow-tmp"
chmod 0755 "$f.clusterflow-tmp"; mv -f "$f.clusterflow-tmp" "$f"
for i in $(seq 30); do
  pid=$(cat /run/clusterflow/services/dockerd.pid 2>/dev/null) && kill -0 "$pid" 2>/dev/null && exit 0
  sleep 0.5
done
echo "the supervisor did not start dockerd within 15 s" >&2; exit 1`

// supervisedRestartScript restarts the supervised engine: the supervisor starts a
// new one when the old one exits.
const supervisedRestartScript = `set -eu
if command -v clusterflow-service >/dev/null 2>&1; then exec clusterflow-service restart dockerd; fi
pid=$(cat /run/clusterflow/services/dockerd.pid)
kill -TERM "$pid"
for i in $(seq 60); do
  new=$(cat /run/clusterflow/services/dockerd.pid 2>/dev/null) && [ "$new" != "$pid" ] && kill -0 "$new" 2>/dev/null && exit 0
  sleep 0.5
done
echo "dockerd did not come back within 30 s" >&2; exit 1`

// engineLogScript prints the end of the engine's log, wherever the manager keeps it.
const engineLogScript = `case $1 in
systemd) journalctl -u docker -n 15 --no-pager 2>&1 ;;
clusterflow-service) tail -n 15 /var/log/clusterflow/dockerd.log 2>&1 ;;
*) tail -n 15 /var/log/docker.log 2>&1 ;;
esac`

// StartDockerEngine makes sure the engine runs and starts at boot:
//
//   - with systemd (/run/systemd/system exists): systemctl enable, then start, or
//     restart when req.Restart;
//   - else, on hosts with the clusterflow node supervisor (/etc/clusterflow/
//     services.d, the lab nodes): the service file dockerd, through
//     clusterflow-service when installed, else written directly; the supervisor
//     restarts the engine when it exits and at every boot;
//   - else with the SysV script: service docker start (or restart).
//
// Hosts with none of these fail with a non-retryable ErrRemoteFailed. Then it waits
// up to a minute for the engine to answer on its socket. An engine that was already
// running and enabled, with no restart asked for, is left alone (unchanged).
func (d *Docker) StartDockerEngine(ctx context.Context, req StartEngineRequest) (StartEngineResult, error) {
	h := req.Host
	op, done := d.begin(ctx, h)
	defer done()
	r, err := op.run(ctx, "check", op.script(engineStateScript, d.dockerSocket, d.daemonJSON))
	if err != nil {
		return StartEngineResult{}, err
	}
	st := parseKeyValues(r.stdout)
	res := StartEngineResult{Manager: st["manager"]}
	if st["dockerd"] == "" {
		return res, remoteFailed(h, "dockerd is not installed (not on root's PATH); install the engine packages first")
	}
	running := st["active"] == "yes" && st["answers"] == "yes"
	restart := req.Restart || st["stale"] == "yes"

	var actions [][]string // argv lists to run in order
	switch res.Manager {
	case EngineBySystemd:
		if st["enabled"] != "yes" {
			actions = append(actions, []string{"systemctl", "enable", "docker"})
			res.Action = "enabled"
		}
		switch {
		case st["active"] != "yes":
			actions = append(actions, []string{"systemctl", "start", "docker"})
			res.Action = "started"
		case restart:
			actions = append(actions, []string{"systemctl", "restart", "docker"})
			res.Action = "restarted"
		}
	case EngineBySupervisor:
		switch {
		case st["enabled"] != "yes":
			actions = append(actions, op.script(supervisedStartScript, st["dockerd"]).argv)
			res.Action = "started"
		case st["active"] != "yes":
			// The service file is there: the supervisor is (re)starting it.
			res.Action = "waited"
		case restart:
			actions = append(actions, op.script(supervisedRestartScript).argv)
			res.Action = "restarted"
		}
	case EngineBySysv:
		switch {
		case st["active"] != "yes":
			actions = append(actions, []string{"service", "docker", "start"})
			res.Action = "started"
		case restart:
			actions = append(actions, []string{"service", "docker", "restart"})
			res.Action = "restarted"
		}
	default:
		return res, remoteFailed(h, "cannot start dockerd: the host has no systemd, no clusterflow node supervisor (/etc/clusterflow/services.d) and no /etc/init.d/docker")
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
			return res, hostError(h, ErrEngineNotReady, true, "%s failed (exit %d): %s%s", strings.Join(argv[:min(len(argv), 3)], " "), r.exitCode,
				lastOutputLine(r.stderr+"\n"+r.stdout), d.engineLog(ctx, op, res.Manager))
		}
	}
	r, err = op.run(ctx, "wait", op.script(waitEngineScript, d.dockerSocket, "120"))
	if err != nil {
		return res, err
	}
	if r.exitCode != 0 {
		return res, hostError(h, ErrEngineNotReady, true, "the engine (%s) did not answer on %s within 60 s%s", res.Manager, d.dockerSocket, d.engineLog(ctx, op, res.Manager))
	}
	return res, nil
}

func (d *Docker) engineLog(ctx context.Context, op *dockerOp, manager string) string {
	r, err := op.run(ctx, "log", op.script(engineLogScript, manager))
	if err != nil || strings.TrimSpace(r.stdout) == "" {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return "; engine log: " + strings.Join(lines, " | ")
}

// parseKeyValues reads KEY=VALUE lines.
func parseKeyValues(out string) map[string]string {
	m := map[string]string{}
	for line := range strings.Lines(out) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			m[k] = v
		}
	}
	return m
}

// ---------------------------------------------------------------------------
// Plumbing shared by the Docker activities.

// dockerOp is one activity execution on one host: its progress, shared with the
// heartbeat goroutine.
type dockerOp struct {
	pool  *Pool
	host  playbooks.Host
	start time.Time

	mu       sync.Mutex
	phase    string
	changed  bool
	lastLine string
	upload   *uploadProgress
	record   func() // records a heartbeat now; nil outside activities
}

// begin starts an activity's bookkeeping and its heartbeat goroutine. A change
// recorded by the previous attempt (heartbeat details) is carried over.
func (d *Docker) begin(ctx context.Context, h playbooks.Host) (*dockerOp, func()) {
	op := &dockerOp{pool: d.pool, host: h, start: time.Now(), phase: "start"}
	if !activity.IsActivity(ctx) {
		return op, func() {}
	}
	if activity.HasHeartbeatDetails(ctx) {
		var prev DockerProgress
		if err := activity.GetHeartbeatDetails(ctx, &prev); err == nil && prev.Changed {
			op.changed = true
		}
	}
	op.record = func() { activity.RecordHeartbeat(ctx, op.snapshot()) }
	every := heartbeatInterval(ctx, d.heartbeatEvery)
	return op, tick(ctx, every, op.record)
}

func (op *dockerOp) snapshot() DockerProgress {
	op.mu.Lock()
	defer op.mu.Unlock()
	p := DockerProgress{Phase: op.phase, Changed: op.changed, ElapsedMs: time.Since(op.start).Milliseconds(), LastLine: op.lastLine}
	if op.upload != nil {
		p.BytesDone, p.BytesTotal = op.upload.done.Load(), op.upload.total
	}
	return p
}

// acting marks the start of a change to the host. The heartbeat goes out at once,
// so that an attempt killed from here on leaves Changed for the next one.
func (op *dockerOp) acting(phase string) {
	op.mu.Lock()
	op.phase, op.changed = phase, true
	op.mu.Unlock()
	if op.record != nil {
		op.record()
	}
}

func (op *dockerOp) setPhase(phase string) {
	op.mu.Lock()
	op.phase = phase
	op.mu.Unlock()
}

func (op *dockerOp) changedSoFar() bool {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.changed
}

func (op *dockerOp) setUpload(p *uploadProgress) {
	op.mu.Lock()
	op.upload = p
	op.mu.Unlock()
}

// script is a remoteExec running a POSIX sh script with arguments.
func (op *dockerOp) script(text string, args ...string) remoteExec {
	return remoteExec{argv: append([]string{"/bin/sh", "-c", text, "clusterflow"}, args...)}
}

// run executes e on the op's host through the pool, with sudo when the host asks
// for it, keeping the output's last line for heartbeats.
func (op *dockerOp) run(ctx context.Context, phase string, e remoteExec) (execResult, error) {
	return op.runAs(ctx, phase, e, op.host.Sudo)
}

// runAs is run with an explicit choice of sudo.
func (op *dockerOp) runAs(ctx context.Context, phase string, e remoteExec, sudo bool) (execResult, error) {
	op.mu.Lock()
	op.phase = phase
	op.mu.Unlock()
	e.sudo = sudo
	e.heartbeatEvery = time.Second
	e.heartbeat = func(_ time.Duration, last string) {
		op.mu.Lock()
		op.lastLine = last
		op.mu.Unlock()
	}
	return op.pool.run(ctx, op.host, e)
}
