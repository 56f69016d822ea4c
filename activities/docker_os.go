package activities

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/clusterflow/clusterflow/activities/remote"
)

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

// DetectOS reads /etc/os-release and the dpkg architecture of req.Host. Hosts other
// than Debian, Ubuntu and their derivatives get a non-retryable ErrUnsupportedOS.
func (d *Docker) DetectOS(ctx context.Context, req DockerHostRequest) (OSInfo, error) {
	op, done := d.begin(ctx, req.Host)
	defer done()
	info, problem, err := detectOS(ctx, op)
	if err != nil {
		return OSInfo{}, err
	}
	if problem != "" {
		return info, unsupportedOS(req.Host, "%s", problem)
	}
	return info, nil
}

// detectOS reads the host's OS (os-detect.sh). problem is empty when the host is
// supported, else the reason.
func detectOS(ctx context.Context, op *hostOp) (info OSInfo, problem string, err error) {
	r, err := op.run(ctx, "detect", osDetectScript.cmd())
	if err != nil {
		return OSInfo{}, "", err
	}
	if r.ExitCode != 0 {
		return OSInfo{}, "", remoteFailed(op.host, "reading /etc/os-release failed (exit %d): %s", r.ExitCode, strings.TrimSpace(r.Stderr))
	}
	parts := strings.Split(r.Stdout, "@@clusterflow@@\n")
	if len(parts) != 3 {
		return OSInfo{}, "", remoteFailed(op.host, "unexpected output while detecting the OS: %q", r.Stdout)
	}
	info, problem = osInfoFrom(parseOSRelease(parts[0]), strings.TrimSpace(parts[1]), strings.TrimSpace(parts[2]) == "apt")
	return info, problem, nil
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
		if !ok || !remote.IsEnvName(k) {
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
