package activities

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/rules"
)

// This file runs apt and dpkg on a host, for InstallDockerPackages and for
// InstallConsul's apt source: finishing an interrupted dpkg run, asking dpkg what
// is installed, installing from the archive with version pins, adding a vendor's
// repository, and telling apt's failures apart.

// aptLockTimeout is how long apt waits for the dpkg lock before giving up
// (DPkg::Lock::Timeout); then the activity is retried after apt.retryDelay.
const aptLockTimeout = 60

// apt is apt and dpkg on op's host.
type apt struct {
	op         *hostOp
	retryDelay time.Duration // NextRetryDelay of ErrPackageManagerBusy
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

// installed asks dpkg about pkgs. Unknown packages are simply absent from the map.
func (a apt) installed(ctx context.Context, pkgs []string) (map[string]pkgState, error) {
	argv := append([]string{"dpkg-query", "-W", "-f", `${Package}\t${Status}\t${Version}\n`, "--"}, pkgs...)
	r, err := a.op.run(ctx, "check", remote.Cmd{Argv: argv})
	if err != nil {
		return nil, err
	}
	// Exit 1 means "some package is unknown", which is an answer.
	if r.ExitCode > 1 {
		return nil, remoteFailed(a.op.host, "dpkg-query failed (exit %d): %s", r.ExitCode, strings.TrimSpace(r.Stderr))
	}
	return parseDpkgQuery(r.Stdout), nil
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

// repair finishes an interrupted dpkg run: dpkg --configure -a configures what was
// unpacked; packages left half-installed, and dependencies never unpacked, are
// dealt with by the apt run that follows (apt-get --fix-broken install). It reports
// whether a repair was needed.
func (a apt) repair(ctx context.Context) (bool, error) {
	op := a.op
	r, err := op.run(ctx, "check", dpkgAuditScript.cmd())
	if err != nil {
		return false, err
	}
	if !strings.HasPrefix(r.Stdout, "repair") {
		return false, nil
	}
	op.acting("repair")
	r, err = op.run(ctx, "repair", remote.Cmd{
		Argv: []string{"dpkg", "--force-confdef", "--force-confold", "--configure", "-a"},
		Env:  aptEnv,
	})
	if err != nil {
		return false, err
	}
	if r.ExitCode != 0 {
		if lockBusyRE.MatchString(r.Stderr + r.Stdout) {
			return false, a.busy("dpkg --configure -a", r)
		}
		// Dependency problems left by a half-installed package: the apt run with
		// --fix-broken that follows sorts them out, or fails with a clear message.
		if activity.IsActivity(ctx) {
			activity.GetLogger(ctx).Warn("dpkg --configure -a failed; continuing with apt --fix-broken",
				"host", op.host.Name, "exit", r.ExitCode, "stderr", lastOutputLine(r.Stderr))
		}
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

// noPin pins no package.
func noPin(string) string { return "" }

// install runs apt-get update and apt-get install for pkgs, resolving version pins
// against what the archive offers. After a repair (fixBroken), apt first completes
// what the interrupted run left with unmet dependencies: apt refuses to install
// anything else until that is done.
func (a apt) install(ctx context.Context, pkgs []string, pin func(string) string, fixBroken bool) error {
	op := a.op
	op.acting("apt-get update")
	r, err := op.run(ctx, "apt-get update", remote.Cmd{Argv: aptBase("update"), Env: aptEnv})
	if err != nil {
		return err
	}
	if r.ExitCode != 0 {
		return a.failed("apt-get update", r)
	}
	if fixBroken {
		op.acting("apt-get --fix-broken install")
		r, err = op.run(ctx, "apt-get --fix-broken install", remote.Cmd{Argv: append(aptBase("install"), "--fix-broken"), Env: aptEnv})
		if err != nil {
			return err
		}
		if r.ExitCode != 0 {
			return a.failed("apt-get --fix-broken install", r)
		}
	}
	args := make([]string, 0, len(pkgs))
	for _, p := range pkgs {
		want := pin(p)
		if want == "" {
			args = append(args, p)
			continue
		}
		v, err := a.resolveVersion(ctx, p, want)
		if err != nil {
			return err
		}
		args = append(args, p+"="+v)
	}
	op.acting("apt-get install")
	r, err = op.run(ctx, "apt-get install", remote.Cmd{Argv: append(aptBase("install"), args...), Env: aptEnv})
	if err != nil {
		return err
	}
	if r.ExitCode != 0 {
		return a.failed("apt-get install "+strings.Join(args, " "), r)
	}
	return nil
}

// resolveVersion finds the archive version of pkg that the pin want stands for.
func (a apt) resolveVersion(ctx context.Context, pkg, want string) (string, error) {
	r, err := a.op.run(ctx, "apt-cache madison", remote.Cmd{Argv: []string{"apt-cache", "madison", pkg}})
	if err != nil {
		return "", err
	}
	versions := parseMadison(r.Stdout)
	v, ok := pickVersion(versions, want)
	if !ok {
		avail := "none"
		if len(versions) > 0 {
			avail = strings.Join(versions[:min(len(versions), 8)], ", ")
		}
		return "", packageUnavailable(a.op.host, "%s version %s is not available from the configured sources (available: %s)", pkg, want, avail)
	}
	return v, nil
}

// ensureInstalled installs pkgs unless dpkg has them already (no pins).
func (a apt) ensureInstalled(ctx context.Context, pkgs ...string) error {
	have, err := a.installed(ctx, pkgs)
	if err != nil {
		return err
	}
	if len(missingPackages(have, pkgs, noPin)) == 0 {
		return nil
	}
	return a.install(ctx, pkgs, noPin, false)
}

// aptRepo is a vendor's apt repository.
type aptRepo struct {
	name    string // for messages: Docker, HashiCorp
	url     string // the repository (or its mirror)
	keyURL  string // its armored signing key
	line    string // the sources line
	keyring string // where the key goes on the host
	list    string // where the line goes
}

// addRepo makes repo an apt source (apt-repo.sh), with ca-certificates installed
// first when it is served over https.
func (a apt) addRepo(ctx context.Context, repo aptRepo) error {
	op := a.op
	if strings.HasPrefix(repo.url, "https:") {
		if err := a.ensureInstalled(ctx, "ca-certificates"); err != nil {
			return err
		}
	}
	phase := strings.ToLower(repo.name) + " repository"
	op.acting(phase)
	r, err := op.run(ctx, phase, aptRepoScript.cmd(repo.keyURL, repo.line, repo.keyring, repo.list))
	if err != nil {
		return err
	}
	if r.ExitCode != 0 {
		msg := fmt.Sprintf("setting up %s's apt repository from %s failed (exit %d): %s", repo.name, repo.url, r.ExitCode, lastOutputLine(r.Stderr+"\n"+r.Stdout))
		if r.ExitCode == 3 {
			return packageUnavailable(op.host, "%s", msg)
		}
		return packageInstallFailed(op.host, "%s", msg)
	}
	return nil
}

var (
	lockBusyRE = regexp.MustCompile(`Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock (the administration )?directory|lock was locked by another process|status database area is locked|is another process using it\?`)
	// aptFinalRE: errors that the same input would hit again.
	aptFinalRE = regexp.MustCompile(`Unable to locate package|has no installation candidate|Version '[^']*' for '[^']*' was not found|Couldn't find any package|Unmet dependencies|unmet dependencies|NO_PUBKEY|is not signed|does not have a Release file|Release file [^\n]* is not valid|The following signatures couldn't be verified|Malformed entry|conflicting values set for option Signed-By`)
)

// failed types a failed apt or dpkg run from its output.
func (a apt) failed(what string, r remote.Result) error {
	h := a.op.host
	out := r.Stderr + "\n" + r.Stdout
	switch {
	case lockBusyRE.MatchString(out):
		return a.busy(what, r)
	case aptFinalRE.MatchString(out):
		return packageUnavailable(h, "%s failed (exit %d): %s", what, r.ExitCode, aptSummary(out))
	default:
		return packageInstallFailed(h, "%s failed (exit %d): %s", what, r.ExitCode, aptSummary(out))
	}
}

// busy is the error for a dpkg lock held by someone else: retried after a delay.
func (a apt) busy(what string, r remote.Result) error {
	return packageManagerBusy(a.op.host, a.retryDelay, "%s: the package manager is busy (the dpkg lock was held for over %d s by another apt or dpkg run); will retry: %s",
		what, aptLockTimeout, aptSummary(r.Stderr+"\n"+r.Stdout))
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

// Debian versions and pins.

func checkPackageVersion(v string) error {
	if v != "" && !rules.DebianVersion(v) {
		return fmt.Errorf("version %q is not a Debian package version", v)
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
