package playbooks

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// defaultClusterKey is where DistributeKeys keeps the operator's cluster key when the
// step does not say: on the machine that resolves the playbook, readable by the worker.
const defaultClusterKey = "~/.ssh/clusterflow_ed25519"

// maxDaemonConfig bounds the daemon.json fragment a playbook may carry.
const maxDaemonConfig = 64 << 10

// aptVersion is the character set of a Debian package version.
var aptVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~:-]*$`)

// readDistributeKeys reads the fields of a distributeKeys step.
func readDistributeKeys(f *file, m *fields, s *Step, _ *stepContext) {
	d := &DistributeKeysStep{}
	s.DistributeKeys = d
	key := defaultClusterKey
	n, p := m.get("clusterKey")
	if n != nil {
		var ok bool
		if key, ok = f.nonEmptyStr(n, p); !ok {
			return
		}
	}
	abs, err := f.localPath(key)
	if err != nil {
		if n == nil {
			n, p = m.node, m.path
		}
		f.errorAt(n, p, "%v", err)
	}
	d.ClusterKey = abs
	if n, p := m.get("user"); n != nil {
		d.User = f.account(n, p, "user")
	}
	if n, p := m.get("mesh"); n != nil {
		d.Mesh, _ = f.boolean(n, p)
	}
	if n, p := m.get("rotate"); n != nil {
		d.Rotate, _ = f.boolean(n, p)
	}
}

// readInstallDocker reads the fields of an installDocker step.
func readInstallDocker(f *file, m *fields, s *Step, _ *stepContext) {
	d := &InstallDockerStep{Source: DockerFromDistro}
	s.InstallDocker = d
	if n, p := m.get("source"); n != nil {
		if v, ok := f.str(n, p); ok {
			switch v {
			case DockerFromDistro, DockerFromRepo, DockerFromOffline:
				d.Source = v
			default:
				f.errorAt(n, p, "unknown source %s; sources are: %s (Debian's docker.io), %s (Docker's apt repository or a mirror of it), %s (.deb files sent from the worker)",
					quote(v), DockerFromDistro, DockerFromRepo, DockerFromOffline)
			}
		}
	}
	if n, p := m.get("version"); n != nil {
		if v, ok := f.nonEmptyStr(n, p); ok {
			if !aptVersion.MatchString(v) {
				f.errorAt(n, p, "must be a Debian package version such as 20.10.24+dfsg1-1+deb12u1, got %s", quote(v))
			}
			d.Version = v
		}
	}
	n, p := m.get("mirror")
	switch {
	case n != nil && d.Source != DockerFromRepo:
		f.errorAt(n, p, "mirror is only used with source: %s", DockerFromRepo)
	case n != nil:
		if v, ok := f.nonEmptyStr(n, p); ok {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				f.errorAt(n, p, "must be an http or https URL such as https://mirror.example/docker-ce/linux, got %s", quote(v))
			}
			d.Mirror = strings.TrimSuffix(v, "/")
		}
	}
	n, p = m.get("packages")
	switch {
	case n == nil && d.Source == DockerFromOffline:
		f.missing(m, "packages", "source: %s needs the directory of .deb files to send", DockerFromOffline)
	case n != nil && d.Source != DockerFromOffline:
		f.errorAt(n, p, "packages is only used with source: %s", DockerFromOffline)
	case n != nil:
		if dir, ok := f.localFile(n, p); ok {
			if problem := debDirProblem(dir); problem != "" {
				f.errorAt(n, p, "%s: %s", dir, problem)
			}
			d.Packages = dir
		}
	}
	if n, p := m.get("daemonConfig"); n != nil {
		d.DaemonConfig = f.daemonConfig(n, p)
	}
	if n, p := m.get("users"); n != nil {
		if items, ok := f.list(n, p, "user names"); ok {
			for i, item := range items {
				if u := f.account(item, indexPath(p, i), "user"); u != "" {
					d.Users = append(d.Users, u)
				}
			}
		}
	}
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
