package playbooks

import (
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/clusterflow/clusterflow/internal/rules"
)

// defaultGossipKeyFile is where ConsulBootstrap keeps the gossip encryption key when
// the step does not say: on the machine that resolves the playbook, readable by the
// worker. The key itself never enters a playbook or a plan.
const defaultGossipKeyFile = "~/.config/clusterflow/consul-gossip.key"

// maxSHA256SUMS bounds a sha256sums file: a release lists a few dozen files.
const maxSHA256SUMS = 1 << 20

// consulDatacenter is what Consul accepts as a datacenter name (it lowercases
// anything else, which would make the config differ from what was written).
var consulDatacenter = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// readConsul reads the fields of a consulBootstrap step.
func readConsul(f *file, m *fields, s *Step, c *stepContext) {
	cs := &ConsulStep{Source: ConsulFromFile}
	s.Consul = cs
	if n, p := m.get("servers"); n != nil {
		cs.Servers = f.stepSubset(n, p, c)
	}
	if n, p := m.get("source"); n != nil {
		var ok bool
		if cs.Source, ok = f.str(n, p); !ok {
			// The fields that depend on the source would only repeat the mistake.
			for _, field := range []string{"binary", "url", "sha256"} {
				c.settle(field)
			}
		}
	}
	if n, p := m.get("binary"); n != nil {
		if b, ok := f.consulBinary(n, p); ok {
			cs.Binary = b
		}
	}
	if n, p := m.get("url"); n != nil {
		cs.URL, _ = f.nonEmptyStr(n, p)
	}
	// sha256 or sha256sums (a SHA256SUMS file, read now): the sum of the binary
	// (file) or of the zip (url).
	sn, sp := m.get("sha256")
	ln, lp := m.get("sha256sums")
	switch {
	case sn != nil && ln != nil:
		f.errorAt(ln, lp, "give sha256 or sha256sums, not both")
		c.settle("sha256")
	case sn != nil:
		cs.SHA256, _ = f.nonEmptyStr(sn, sp)
	case ln != nil && cs.Source == ConsulFromApt:
		f.errorAt(ln, lp, "sha256sums is only used with source: %s or %s (apt checks packages by the repository's signature)", ConsulFromFile, ConsulFromURL)
	case ln != nil:
		if cs.SHA256 = f.sha256From(ln, lp, consulFileName(cs)); cs.SHA256 == "" {
			// Reported at sha256sums, or at the binary or url it gives the sum of.
			c.settle("sha256")
		}
	}
	if n, p := m.get("version"); n != nil {
		cs.Version, _ = f.nonEmptyStr(n, p)
	}
	if n, p := m.get("datacenter"); n != nil {
		cs.Datacenter, _ = f.nonEmptyStr(n, p)
	}
	cs.GossipKeyFile = f.localPathOr(m, "gossipKeyFile", defaultGossipKeyFile)
	if n, p := m.get("bindInterface"); n != nil {
		cs.BindInterface, _ = f.nonEmptyStr(n, p)
	}
}

// Normalize applies a consulBootstrap step's defaults (every host a server, source
// file, datacenter dc1, sha256 in lower case, the apt repository's URL without a
// trailing slash) and checks its settings.
func (cs *ConsulStep) Normalize(sc Scope) Problems {
	var ps Problems
	if len(cs.Servers) == 0 {
		cs.Servers = slices.Clone(sc.Hosts)
	}
	sc.stepRef(&ps, "servers", cs.Servers)
	for i, name := range cs.Servers {
		if slices.Contains(cs.Servers[:i], name) {
			ps.add("servers", "server %s is listed twice", quote(name))
			break
		}
	}
	if cs.Source == "" {
		cs.Source = ConsulFromFile
	}
	if cs.Datacenter == "" {
		cs.Datacenter = "dc1"
	}
	switch cs.Source {
	case ConsulFromFile, ConsulFromURL, ConsulFromApt:
		ps = append(ps, cs.source()...)
	default:
		// The fields that depend on the source would only repeat the mistake.
		ps.add("source", "unknown source %s; sources are: %s (a consul binary sent from the worker), %s (a release zip each host downloads), %s (HashiCorp's apt repository or a mirror of it)",
			quote(cs.Source), ConsulFromFile, ConsulFromURL, ConsulFromApt)
	}
	if cs.Version != "" && !rules.DebianVersion(cs.Version) {
		ps.add("version", "must be a version such as 1.22.7 (apt: 1.22.7-1), got %s", quote(cs.Version))
	}
	if !consulDatacenter.MatchString(cs.Datacenter) {
		ps.add("datacenter", "must be lower-case letters, digits, _ and - (at most 63), starting with a letter or digit, got %s", quote(cs.Datacenter))
	}
	if cs.GossipKeyFile == "" {
		ps.add("gossipKeyFile", "is required: the absolute path of the gossip key's file on the worker")
	}
	ps.workerPath("gossipKeyFile", cs.GossipKeyFile)
	if cs.BindInterface != "" && !rules.InterfaceName(cs.BindInterface) {
		ps.add("bindInterface", "must be a network interface name such as eth1, got %s", quote(cs.BindInterface))
	}
	return ps
}

// source checks the fields that depend on the source: binary (file), url (the zip
// for url, the repository for apt) and sha256 (file and url).
func (cs *ConsulStep) source() Problems {
	var ps Problems
	switch {
	case cs.Binary == "" && cs.Source == ConsulFromFile:
		ps.add("binary", "is required; source: %s needs the consul executable to send, e.g. ../.clusterflow/lab/consul (`go run ./lab consul` builds one)", ConsulFromFile)
	case cs.Binary != "" && cs.Source != ConsulFromFile:
		ps.add("binary", "binary is only used with source: %s", ConsulFromFile)
	default:
		ps.workerPath("binary", cs.Binary)
	}
	switch {
	case cs.URL == "" && cs.Source == ConsulFromURL:
		ps.add("url", "is required; source: %s needs the release zip, e.g. https://releases.hashicorp.com/consul/1.22.7/consul_1.22.7_linux_amd64.zip", ConsulFromURL)
	case cs.URL != "" && cs.Source == ConsulFromFile:
		ps.add("url", "url is only used with source: %s (the release zip) or %s (the apt repository)", ConsulFromURL, ConsulFromApt)
	case cs.URL != "":
		u, err := url.Parse(cs.URL)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			ps.add("url", "must be an http or https URL, got %s", quote(cs.URL))
		case u.User != nil || strings.ContainsAny(cs.URL, " \t\n'\"\\"):
			ps.add("url", "must be a plain URL, without credentials, quotes or spaces")
		case cs.Source == ConsulFromURL && !strings.HasSuffix(u.Path, ".zip"):
			ps.add("url", "must name a release zip (ending in .zip), got %s", quote(cs.URL))
		case cs.Source == ConsulFromApt:
			cs.URL = strings.TrimSuffix(cs.URL, "/")
		}
	}
	switch {
	case cs.Source == ConsulFromApt && cs.SHA256 != "":
		ps.add("sha256", "sha256 is only used with source: %s or %s (apt checks packages by the repository's signature)", ConsulFromFile, ConsulFromURL)
	case cs.Source == ConsulFromApt:
	case cs.SHA256 == "":
		what := "the consul binary"
		if cs.Source == ConsulFromURL {
			what = "the release zip"
		}
		ps.add("sha256", "is required; source: %s needs the SHA-256 of %s: give sha256 (hex) or sha256sums (a SHA256SUMS file)", cs.Source, what)
	case !isSHA256(cs.SHA256):
		ps.add("sha256", "must be a SHA-256 in hex (64 characters), got %s", quote(cs.SHA256))
	default:
		cs.SHA256 = strings.ToLower(cs.SHA256)
	}
	return ps
}

// consulBinary reads binary: a local path (absolute, ~/, or relative to the playbook;
// it may lie outside the playbook's directory, since its SHA-256 must be given too),
// which must be a regular file now.
func (f *file) consulBinary(n *yaml.Node, path string) (string, bool) {
	p, ok := f.localFile(n, path)
	if !ok {
		return "", false
	}
	st, err := os.Stat(p)
	if err == nil {
		err = regularFile(st)
	}
	if err != nil {
		f.errorAt(n, path, "cannot use %s (%s): %v", quote(n.Value), p, fsProblem(err))
		return p, false
	}
	return p, true
}

// consulFileName is the name a SHA256SUMS file lists the step's download under: the
// binary's base name (file) or the zip's (url); "" when that is not known.
func consulFileName(cs *ConsulStep) string {
	switch {
	case cs.Source == ConsulFromFile && cs.Binary != "":
		return filepath.Base(cs.Binary)
	case cs.Source == ConsulFromURL && cs.URL != "":
		if u, err := url.Parse(cs.URL); err == nil {
			return path.Base(u.Path)
		}
	}
	return ""
}

// sha256From reads sha256sums: a local SHA256SUMS file ("HEX  NAME" lines, as
// HashiCorp publishes them), read now, and returns the sum it gives for name.
func (f *file) sha256From(n *yaml.Node, path, name string) string {
	p, ok := f.localFile(n, path)
	if !ok {
		return ""
	}
	data, err := readLimited(p, maxSHA256SUMS)
	if err != nil {
		f.errorAt(n, path, "cannot read %s (%s): %v", quote(n.Value), p, err)
		return ""
	}
	if name == "" {
		return "" // the binary or url is missing or wrong: reported there
	}
	sums, bad := parseSums(string(data))
	if bad != "" {
		f.errorAt(n, path, "%s is not a SHA256SUMS file: %s", quote(n.Value), bad)
		return ""
	}
	sum, found := sums[name]
	if !found {
		f.errorAt(n, path, "%s lists no SHA-256 for %s", quote(n.Value), quote(name))
		return ""
	}
	return sum
}

// parseSums reads sha256sum(1) output: "HEX  NAME" or "HEX *NAME" lines; blank lines
// and # comments are skipped. bad says what is wrong with the first bad line.
func parseSums(text string) (sums map[string]string, bad string) {
	sums = map[string]string{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sum, name, ok := strings.Cut(line, " ")
		// "./" is trimmed before the check: "SUM  ./" names no file.
		name = strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(name, " "), "*"), "./")
		if !ok || !isSHA256(sum) || name == "" {
			// The line is not quoted: the file may be any file of the worker's.
			return nil, "line " + strconv.Itoa(i+1) + " is not \"SHA256  FILE\""
		}
		sums[name] = strings.ToLower(sum)
	}
	return sums, ""
}

func isSHA256(s string) bool { return rules.SHA256(strings.ToLower(s)) }
