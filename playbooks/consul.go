package playbooks

import (
	"encoding/hex"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
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
	cs := &ConsulStep{Source: ConsulFromFile, Datacenter: "dc1"}
	s.Consul = cs
	if n, p := m.get("servers"); n != nil {
		cs.Servers = f.stepSubset(n, p, s, c, "servers")
	} else {
		cs.Servers = s.Hosts
	}
	if n, p := m.get("source"); n != nil {
		v, ok := f.str(n, p)
		switch {
		case !ok:
			cs.Source = ""
		case v == ConsulFromFile || v == ConsulFromURL || v == ConsulFromApt:
			cs.Source = v
		default:
			f.errorAt(n, p, "unknown source %s; sources are: %s (a consul binary sent from the worker), %s (a release zip each host downloads), %s (HashiCorp's apt repository or a mirror of it)",
				quote(v), ConsulFromFile, ConsulFromURL, ConsulFromApt)
			cs.Source = ""
		}
	}
	if cs.Source == "" {
		// The fields that depend on the source would only repeat the mistake.
		readConsulCommon(f, m, cs)
		cs.Source = ConsulFromFile
		return
	}

	// binary: file only, required there.
	n, p := m.get("binary")
	switch {
	case n == nil && cs.Source == ConsulFromFile:
		f.missing(m, "binary", "source: %s needs the consul executable to send, e.g. ../.clusterflow/lab/consul (`go run ./lab consul` builds one)", ConsulFromFile)
	case n != nil && cs.Source != ConsulFromFile:
		f.errorAt(n, p, "binary is only used with source: %s", ConsulFromFile)
	case n != nil:
		if b, ok := f.consulBinary(n, p); ok {
			cs.Binary = b
		}
	}

	// url: the release zip (url, required), or the apt repository (apt, optional).
	n, p = m.get("url")
	switch {
	case n == nil && cs.Source == ConsulFromURL:
		f.missing(m, "url", "source: %s needs the release zip, e.g. https://releases.hashicorp.com/consul/1.22.7/consul_1.22.7_linux_amd64.zip", ConsulFromURL)
	case n != nil && cs.Source == ConsulFromFile:
		f.errorAt(n, p, "url is only used with source: %s (the release zip) or %s (the apt repository)", ConsulFromURL, ConsulFromApt)
	case n != nil:
		if v, ok := f.nonEmptyStr(n, p); ok {
			u, err := url.Parse(v)
			switch {
			case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
				f.errorAt(n, p, "must be an http or https URL, got %s", quote(v))
			case u.User != nil || strings.ContainsAny(v, " \t\n'\"\\"):
				f.errorAt(n, p, "must be a plain URL, without credentials, quotes or spaces")
			case cs.Source == ConsulFromURL && !strings.HasSuffix(u.Path, ".zip"):
				f.errorAt(n, p, "must name a release zip (ending in .zip), got %s", quote(v))
			default:
				cs.URL = v
				if cs.Source == ConsulFromApt {
					cs.URL = strings.TrimSuffix(v, "/")
				}
			}
		}
	}

	// sha256 or sha256sums: file and url, one of them required.
	sn, sp := m.get("sha256")
	ln, lp := m.get("sha256sums")
	if cs.Source == ConsulFromApt {
		for _, kv := range []struct {
			n    *yaml.Node
			p, k string
		}{{sn, sp, "sha256"}, {ln, lp, "sha256sums"}} {
			if kv.n != nil {
				f.errorAt(kv.n, kv.p, "%s is only used with source: %s or %s (apt checks packages by the repository's signature)", kv.k, ConsulFromFile, ConsulFromURL)
			}
		}
	} else {
		switch {
		case sn != nil && ln != nil:
			f.errorAt(ln, lp, "give sha256 or sha256sums, not both")
		case sn != nil:
			if v, ok := f.nonEmptyStr(sn, sp); ok {
				if !isSHA256(v) {
					f.errorAt(sn, sp, "must be a SHA-256 in hex (64 characters), got %s", quote(v))
				} else {
					cs.SHA256 = strings.ToLower(v)
				}
			}
		case ln != nil:
			cs.SHA256 = f.sha256From(ln, lp, consulFileName(cs))
		default:
			what := "the consul binary"
			if cs.Source == ConsulFromURL {
				what = "the release zip"
			}
			f.missing(m, "sha256", "source: %s needs the SHA-256 of %s: give sha256 (hex) or sha256sums (a SHA256SUMS file)", cs.Source, what)
		}
	}

	readConsulCommon(f, m, cs)
}

// readConsulCommon reads the fields that do not depend on the source.
func readConsulCommon(f *file, m *fields, cs *ConsulStep) {
	if n, p := m.get("version"); n != nil {
		if v, ok := f.nonEmptyStr(n, p); ok {
			if !aptVersion.MatchString(v) {
				f.errorAt(n, p, "must be a version such as 1.22.7 (apt: 1.22.7-1), got %s", quote(v))
			}
			cs.Version = v
		}
	}
	if n, p := m.get("datacenter"); n != nil {
		if v, ok := f.nonEmptyStr(n, p); ok {
			if !consulDatacenter.MatchString(v) {
				f.errorAt(n, p, "must be lower-case letters, digits, _ and - (at most 63), starting with a letter or digit, got %s", quote(v))
			}
			cs.Datacenter = v
		}
	}
	key, keyOK := defaultGossipKeyFile, true
	n, p := m.get("gossipKeyFile")
	if n != nil {
		key, keyOK = f.nonEmptyStr(n, p)
	}
	if keyOK {
		abs, err := f.localPath(key)
		if err != nil {
			if n == nil {
				n, p = m.node, m.path
			}
			f.errorAt(n, p, "%v", err)
		}
		cs.GossipKeyFile = abs
	}
	if n, p := m.get("bindInterface"); n != nil {
		if v, ok := f.nonEmptyStr(n, p); ok {
			if !ifaceName.MatchString(v) {
				f.errorAt(n, p, "must be a network interface name such as eth1, got %s", quote(v))
			}
			cs.BindInterface = v
		}
	}
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
			return nil, "line " + strconv.Itoa(i+1) + " is not \"SHA256  FILE\" (" + quote(line) + ")"
		}
		sums[name] = strings.ToLower(sum)
	}
	return sums, ""
}

func isSHA256(s string) bool {
	_, err := hex.DecodeString(s)
	return len(s) == 64 && err == nil
}
