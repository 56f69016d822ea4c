package playbooks

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/clusterflow/clusterflow/internal/rules"
)

// maxDaemonConfig bounds the daemon.json fragment a playbook may carry.
const maxDaemonConfig = 64 << 10

// readInstallDocker reads the fields of an installDocker step.
func readInstallDocker(f *file, m *fields, s *Step, c *stepContext) {
	d := &InstallDockerStep{Source: DockerFromDistro}
	s.InstallDocker = d
	if n, p := m.get("source"); n != nil {
		var ok bool
		if d.Source, ok = f.str(n, p); !ok {
			// The fields that depend on the source would only repeat the mistake.
			c.settle("mirror")
			c.settle("packages")
		}
	}
	if n, p := m.get("version"); n != nil {
		d.Version, _ = f.nonEmptyStr(n, p)
	}
	if n, p := m.get("mirror"); n != nil {
		d.Mirror, _ = f.nonEmptyStr(n, p)
	}
	if n, p := m.get("packages"); n != nil {
		if dir, ok := f.localFile(n, p); ok {
			// Only an offline install reads the directory; Normalize reports it otherwise.
			if problem := debDirProblem(dir); problem != "" && d.Source == DockerFromOffline {
				f.errorAt(n, p, "%s: %s", dir, problem)
			}
			d.Packages = dir
		}
	}
	if n, p := m.get("daemonConfig"); n != nil {
		d.DaemonConfig = f.daemonConfig(n, p)
	}
	if n, p := m.get("users"); n != nil {
		d.Users, _ = f.stringList(n, p)
	}
}

// Normalize applies an installDocker step's defaults (source distro, the mirror
// without a trailing slash) and checks its settings.
func (d *InstallDockerStep) Normalize(Scope) Problems {
	var ps Problems
	if d.Source == "" {
		d.Source = DockerFromDistro
	}
	switch d.Source {
	case DockerFromDistro, DockerFromRepo, DockerFromOffline:
	default:
		// The fields that depend on the source would only repeat the mistake.
		ps.add("source", "unknown source %s; sources are: %s (Debian's docker.io), %s (Docker's apt repository or a mirror of it), %s (.deb files sent from the worker)",
			quote(d.Source), DockerFromDistro, DockerFromRepo, DockerFromOffline)
		return ps
	}
	if d.Version != "" && !rules.DebianVersion(d.Version) {
		ps.add("version", "must be a Debian package version such as 20.10.24+dfsg1-1+deb12u1 (%s), got %s", rules.DebianVersionRule, quote(d.Version))
	}
	switch {
	case d.Mirror == "":
	case d.Source != DockerFromRepo:
		ps.add("mirror", "mirror is only used with source: %s", DockerFromRepo)
	default:
		if why := mirrorProblem(d.Mirror); why != "" {
			ps.add("mirror", "%s", why)
		}
		d.Mirror = strings.TrimRight(d.Mirror, "/")
	}
	switch {
	case d.Source == DockerFromOffline && d.Packages == "":
		ps.add("packages", "is required; source: %s needs the directory of .deb files to send", DockerFromOffline)
	case d.Source != DockerFromOffline && d.Packages != "":
		ps.add("packages", "packages is only used with source: %s", DockerFromOffline)
	default:
		ps.workerPath("packages", d.Packages)
	}
	if _, ok := d.DaemonConfig[""]; ok {
		ps.add("daemonConfig", "has an empty key")
	}
	for i, u := range d.Users {
		field := indexPath("users", i)
		switch {
		case !rules.UserName(u):
			ps.userName(field, u)
		case slices.Contains(d.Users[:i], u):
			ps.add(field, "%s is listed twice", quote(u))
		}
	}
	return ps
}

// mirrorProblem says what is wrong with an apt mirror's URL, or "".
func mirrorProblem(v string) string {
	u, err := url.Parse(v)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return "must be an http or https URL such as https://mirror.example/docker-ce/linux, got " + quote(v)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(v, " \t\n[]"):
		return "must be a plain URL, without credentials, query or spaces"
	}
	return ""
}

// debDirProblem says what is wrong with an offline package directory, or "".
func debDirProblem(dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fsProblem(err).Error()
	}
	for _, e := range entries {
		if !e.IsDir() && filepath.Ext(e.Name()) == ".deb" {
			return ""
		}
	}
	return "holds no .deb files"
}

// daemonConfig reads the daemon.json fragment: a mapping that JSON can carry.
func (f *file) daemonConfig(n *yaml.Node, path string) map[string]any {
	if n.Kind != yaml.MappingNode {
		f.errorAt(n, path, "must be a mapping of daemon.json settings, got %s", describe(n))
		return nil
	}
	var v map[string]any
	if err := n.Decode(&v); err != nil {
		f.errorAt(n, path, "cannot be read as daemon.json settings: %v", err)
		return nil
	}
	b, err := json.Marshal(v)
	switch {
	case err != nil:
		f.errorAt(n, path, "cannot be written as JSON (keys must be strings): %v", err)
		return nil
	case len(b) > maxDaemonConfig:
		f.errorAt(n, path, "is %d bytes of JSON; the limit is %d", len(b), maxDaemonConfig)
		return nil
	}
	return v
}
