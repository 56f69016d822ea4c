package playbooks

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/clusterflow/clusterflow/internal/rules"
	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// Checks of single values: names, addresses, paths, modes.

// nameRef reads a reference to a host by name (jump).
func (f *file) nameRef(n *yaml.Node, path string) (string, bool) {
	s, ok := f.str(n, path)
	if ok && !namePattern.MatchString(s) {
		f.errorAt(n, path, "must be a host name (%s); got %s", nameRule, quote(s))
		return "", false
	}
	return s, ok
}

// nameRefOrAll reads a group name: the host name charset, and not "all".
func (f *file) nameRefOrAll(n *yaml.Node, path string) string {
	s, ok := f.str(n, path)
	switch {
	case !ok:
		return ""
	case !namePattern.MatchString(s):
		f.errorAt(n, path, "must be a group name (%s); got %s", nameRule, quote(s))
		return ""
	case s == "all":
		f.errorAt(n, path, `"all" is reserved: in a step's hosts it selects every host`)
		return ""
	}
	return s
}

// user reads the SSH login name of a host.
func (f *file) user(n *yaml.Node, path string) (string, bool) {
	s, ok := f.str(n, path)
	if ok && !rules.UserName(s) {
		f.errorAt(n, path, "must be a user name (%s); got %s", rules.UserNameRule, quote(s))
		return "", false
	}
	return s, ok
}

// account checks an upload's owner or group (what is "user" or "group"): a name or
// a numeric id, as chown takes them.
func (ps *Problems) account(field, what, s string) {
	if s != "" && !rules.Account(s) {
		ps.add(field, "must be a %s name (%s) or a numeric id; got %s", what, rules.UserNameRule, quote(s))
	}
}

// userName checks a user name on the hosts.
func (ps *Problems) userName(field, s string) {
	if !rules.UserName(s) {
		ps.add(field, "must be a user name (%s); got %s", rules.UserNameRule, quote(s))
	}
}

// envNames checks the names of environment variables.
func (ps *Problems) envNames(field string, env map[string]string) {
	//workflowcheck:ignore sorted right away: the problems do not depend on map order
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if !rules.EnvName(k) {
			ps.add(keyPath(field, k), "name %s must be letters, digits and _, not starting with a digit", quote(k))
		}
	}
}

// addressProblem says what is wrong with a host address, or "" when it is an IP
// address (v4, or v6 without brackets) or a DNS name.
func addressProblem(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case strings.Contains(s, "://"):
		return "must be an IP address or DNS name, not a URL; write only the host part, and the port under port"
	case strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Sprintf("must be an IP address or DNS name, without spaces; got %s", quote(s))
	case strings.Contains(s, "@"):
		return fmt.Sprintf("must be an IP address or DNS name, got %s; write the user under user", quote(s))
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return ""
	}
	if host, port, err := net.SplitHostPort(s); err == nil {
		if _, perr := strconv.Atoi(port); perr == nil {
			return fmt.Sprintf("%s looks like host:port; write address: %s and port: %s", quote(s), strings.Trim(host, "[]"), port)
		}
	}
	if strings.HasPrefix(s, "[") {
		return fmt.Sprintf("write IPv6 addresses without brackets; got %s", quote(s))
	}
	if strings.Contains(s, ":") {
		return fmt.Sprintf("is not a valid IPv6 address: %s", quote(s))
	}
	if strings.Trim(s, "0123456789.") == "" {
		return fmt.Sprintf("is not a valid IPv4 address: %s", quote(s))
	}
	if !validDNSName(s) {
		return fmt.Sprintf("must be an IP address or DNS name (labels of letters, digits and '-', separated by '.'); got %s", quote(s))
	}
	return ""
}

// validDNSName checks host name syntax: labels of 1-63 letters, digits and inner
// hyphens, 253 characters at most, an optional final dot.
func validDNSName(s string) bool { return rules.DNSName(s) }

// localPath resolves a path on the machine that runs clusterflow: ~/ is the user's
// home directory, and a relative path is relative to the file that wrote it. The
// result is absolute and clean.
func (f *file) localPath(s string) (string, error) {
	switch {
	case strings.ContainsRune(s, 0):
		return "", errors.New("must not contain a NUL byte")
	case s == "~" || strings.HasPrefix(s, "~/"):
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cannot expand ~: %v", err)
		}
		return filepath.Join(home, s[1:]), nil
	case strings.HasPrefix(s, "~"):
		return "", fmt.Errorf("only ~/ (your own home directory) is expanded, not %s", quote(s))
	case filepath.IsAbs(s):
		return filepath.Clean(s), nil
	}
	return filepath.Join(f.dir, s), nil
}

// allowed checks a worker path against the file policy the playbook is read
// under (Options.Files), if any, for a class of use.
func (f *file) allowed(p string, class workerfs.Class) (string, error) {
	if f.r == nil || f.r.policy == nil {
		return p, nil
	}
	if err := f.r.policy.Check(p, class); err != nil {
		return "", err
	}
	return p, nil
}

// localFile reads a local path field (identityFile, knownHostsFile). The file is not
// opened: it is read where the SSH connection is made.
func (f *file) localFile(n *yaml.Node, path string) (string, bool) {
	return f.localFileFor(n, path, workerfs.Content)
}

// sshFile reads a local path field that only the SSH client reads (identityFile,
// knownHostsFile).
func (f *file) sshFile(n *yaml.Node, path string) (string, bool) {
	return f.localFileFor(n, path, workerfs.SSH)
}

// localFileFor reads a local path field for a class of use of the file policy.
func (f *file) localFileFor(n *yaml.Node, path string, class workerfs.Class) (string, bool) {
	s, ok := f.nonEmptyStr(n, path)
	if !ok {
		return "", false
	}
	p, err := f.localPath(s)
	if err == nil {
		p, err = f.allowed(p, class)
	}
	if err != nil {
		f.errorAt(n, path, "%v", err)
		return "", false
	}
	return p, true
}

// localPathOr reads the local path field key of m, or def when it is left out (a
// default that cannot be expanded is reported where the field is missing). "" when
// it cannot be read.
func (f *file) localPathOr(m *fields, key, def string) string {
	s, ok := def, true
	n, p := m.get(key)
	if n != nil {
		s, ok = f.nonEmptyStr(n, p)
	} else {
		n = m.node
	}
	if !ok {
		return ""
	}
	abs, err := f.localPath(s)
	if err == nil {
		// What these fields name is made or replaced by the worker (a cluster key,
		// a gossip key): it must lie where the worker allows writing.
		abs, err = f.allowed(abs, workerfs.Write)
	}
	if err != nil {
		f.errorAt(n, p, "%v", err)
	}
	return abs
}

// remotePath checks an absolute path on a target host, if one is given. Remote hosts
// are POSIX.
func (ps *Problems) remotePath(field, s string) {
	switch {
	case s == "":
	case !strings.HasPrefix(s, "/"):
		ps.add(field, "must be an absolute path (starting with /), got %s", quote(s))
	case strings.ContainsRune(s, 0):
		ps.add(field, "must not contain a NUL byte")
	}
}

// workerPath checks an absolute path on the worker, if one is given. The parser makes
// every local path absolute; JSON input may not.
func (ps *Problems) workerPath(field, s string) {
	if s != "" && !filepath.IsAbs(s) {
		ps.add(field, "must be an absolute path on the worker, got %s", quote(s))
	}
}

// maxMode is the largest file mode: permission bits only.
const maxMode = 0o7777

// mode reads a file mode. The rule, so that a mode always means what it looks like:
//   - a quoted string is read as octal: "0644", "644", "0o644", "04755";
//   - an unquoted number is accepted only when it is unambiguously octal, i.e. written
//     with a leading 0 or 0o (0644, 0o644; YAML 1.1 and 1.2 octal);
//   - an unquoted number without a leading 0 (644, 420) is refused: it could be meant
//     as octal or decimal.
//
// Only permission bits are allowed: at most 07777, and not 0.
func (f *file) mode(n *yaml.Node, path string) (uint32, bool) {
	const want = `must be an octal mode written as a quoted string such as "0644"`
	var digits string
	quoted := n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0
	plainNumber := n.Style == 0 && (n.Tag == "!!int" || n.Tag == "!!float")
	switch {
	case n.Kind == yaml.ScalarNode && quoted:
		digits = strings.TrimPrefix(n.Value, "0o")
	case plainNumber && n.Value == "0":
		digits = "0" // refused below, with the reason
	case plainNumber && strings.HasPrefix(n.Value, "0o"):
		digits = n.Value[2:]
	case plainNumber && strings.HasPrefix(n.Value, "0"):
		digits = n.Value[1:]
	case plainNumber:
		f.errorAt(n, path, "%s; the unquoted number %s is ambiguous (octal or decimal?)", want, n.Value)
		return 0, false
	default:
		f.errorAt(n, path, "%s, got %s", want, describe(n))
		return 0, false
	}
	if digits == "" || len(digits) > 8 || strings.Trim(digits, "01234567") != "" {
		f.errorAt(n, path, "%s (digits 0-7), got %s", want, quote(n.Value))
		return 0, false
	}
	v, _ := strconv.ParseUint(digits, 8, 32) // at most 8 octal digits: cannot fail
	switch {
	case v > maxMode:
		f.errorAt(n, path, "must be at most 07777 (permission bits only), got %s", quote(n.Value))
		return 0, false
	case v == 0:
		// 0 would leave the file unreadable, and uploads take a zero mode as "default".
		f.errorAt(n, path, "must not be 0 (no permissions at all); leave mode out for the default 0644")
		return 0, false
	}
	return uint32(v), true
}
