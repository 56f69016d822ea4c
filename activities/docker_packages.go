package activities

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/workerfs"
	"github.com/clusterflow/clusterflow/playbooks"
)

// PackagesRequest is the input of InstallDockerPackages.
type PackagesRequest struct {
	Host remote.Host `json:"host"`
	OS   OSInfo      `json:"os"`
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
			return PackagesResult{}, unsupportedOS(h, "%s has no release codename (VERSION_CODENAME), which Docker's repository needs; use source distro or offline", req.OS.Name)
		}
	case playbooks.DockerFromOffline:
		var problem string
		if err := d.rem.workerFile("packages", req.Packages, workerfs.Content); err != nil {
			return PackagesResult{}, err
		}
		bundle, problem = readBundle(req.Packages, req.Version, req.OS.Arch)
		if problem != "" {
			return PackagesResult{}, hostInvalid(h, "offline bundle: %s", problem)
		}
		check, pinned = bundle.enginePackages(), []string{bundle.engine.Pkg}
	default:
		return PackagesResult{}, hostInvalid(h, "unknown docker source %q", req.Source)
	}
	if err := checkPackageVersion(req.Version); err != nil {
		return PackagesResult{}, hostInvalid(h, "docker %v", err)
	}
	pin := func(pkg string) string {
		if slices.Contains(pinned, pkg) {
			return req.Version
		}
		return ""
	}

	a := d.apt(op)
	// Step 1. Finish an interrupted dpkg run.
	repaired, err := a.repair(ctx)
	if err != nil {
		return PackagesResult{}, err
	}

	// Step 2. Check: done already?
	have, err := a.installed(ctx, check)
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
		err = d.installOffline(ctx, a, bundle, repaired)
	case req.Source == playbooks.DockerFromRepo:
		if err = a.addRepo(ctx, dockerRepo(req.Mirror, req.OS)); err == nil {
			err = a.install(ctx, check, pin, repaired)
		}
	default:
		err = a.install(ctx, check, pin, repaired)
	}
	if err != nil {
		return PackagesResult{}, err
	}

	// Step 4. Check again: apt's exit status alone is not proof.
	have, err = a.installed(ctx, check)
	if err != nil {
		return PackagesResult{}, err
	}
	if missing := missingPackages(have, check, pin); len(missing) > 0 {
		return PackagesResult{}, packageInstallFailed(h, "apt finished but %s is still not installed%s", strings.Join(missing, ", "), pinNote(req.Version))
	}
	res := PackagesResult{Changed: true, Repaired: repaired, Installed: versionsOf(have, check)}
	res.Message = "installed " + describeInstalled(res.Installed) + " (" + sourceName(req.Source) + attemptNote(ctx) + ")"
	if repaired {
		res.Message = "installed " + describeInstalled(res.Installed) + " (" + sourceName(req.Source) + "; after finishing an interrupted dpkg run" + attemptNote(ctx) + ")"
	}
	return res, nil
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

// versionsOf lists pkgs with the versions dpkg has.
func versionsOf(have map[string]pkgState, pkgs []string) []PackageVersion {
	out := make([]PackageVersion, 0, len(pkgs))
	for _, p := range pkgs {
		out = append(out, PackageVersion{Name: p, Version: have[p].version})
	}
	return out
}

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

// dockerRepo is Docker's apt repository (or its mirror) for a host.
func dockerRepo(mirror string, os OSInfo) aptRepo {
	return aptRepo{name: "Docker", url: repoMirror(mirror), keyURL: dockerKeyURL(mirror, os), line: dockerSourcesLine(mirror, os),
		keyring: dockerKeyring, list: dockerSourcesList}
}
