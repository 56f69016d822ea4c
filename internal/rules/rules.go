// Package rules holds the rules for names and versions that end up on the hosts: user
// and group names, Debian package versions, network interface names, environment
// variable names, SHA-256 sums and the names of the cluster key's companion files. Each rule lives here once; the
// playbook parser, the workflows (for input that arrives without the parser) and the
// activities (which check again what they rely on) all call these functions.
//
// It is a leaf: the standard library only, so that any package may import it without
// importing the playbook parser.
package rules

import (
	"encoding/hex"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
)

// userName is a user name the hosts' tools accept. Debian 12's useradd (shadow 4.13)
// refuses names longer than 32 characters; a leading digit or '-' is refused so that
// a name is never read as a numeric id or an option; a trailing $ is allowed for the
// machine accounts of Samba domains.
var userName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$`)

// UserNameRule says what UserName accepts, for messages.
const UserNameRule = "letters, digits, '_', '.' and '-', starting with a letter or '_', at most 32, optionally ending in $"

// UserName reports whether s is a user name: the SSH login user of a host, the user
// whose ~/.ssh distributeKeys manages, a member of the docker group.
func UserName(s string) bool { return userName.MatchString(s) }

// AccountRule says what Account accepts, for messages.
const AccountRule = "a name (" + UserNameRule + ") or a numeric id"

// Account reports whether s names the owner or group of a file: a user or group name
// (the UserName rule) or a numeric id, as chown takes them.
func Account(s string) bool {
	if userName.MatchString(s) {
		return true
	}
	return s != "" && len(s) <= 10 && strings.Trim(s, "0123456789") == ""
}

// debianVersion is the character set of a Debian package version, epoch and revision
// included (5:27.3.1-1~debian.12~bookworm). dpkg requires the leading digit.
var debianVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~:-]*$`)

// DebianVersionRule says what DebianVersion accepts, for messages.
const DebianVersionRule = "a digit, then letters, digits and . + ~ : -"

// DebianVersion reports whether s is a Debian package version, or the start of one:
// what an apt version pin may hold.
func DebianVersion(s string) bool { return debianVersion.MatchString(s) }

// interfaceName is a Linux network interface name: at most 15 characters (IFNAMSIZ
// less the NUL), no slash, space or colon.
var interfaceName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.@-]{0,14}$`)

// InterfaceName reports whether s is a network interface name such as eth1.
func InterfaceName(s string) bool { return interfaceName.MatchString(s) }

// SHA256 reports whether s is a SHA-256 sum in lower-case hex, the form requests
// carry it in (the parser lower-cases what a playbook writes).
func SHA256(s string) bool {
	_, err := hex.DecodeString(s)
	return len(s) == 64 && err == nil && strings.ToLower(s) == s
}

// envName is the name of an environment variable, or of a playbook variable.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// EnvName reports whether s can name an environment variable: letters, digits and _,
// not starting with a digit.
func EnvName(s string) bool { return envName.MatchString(s) }

// The cluster key's companion files: its public half, the new pair while a rotation
// is in progress, and the pair a rotation replaced. A cluster key path may not end in
// any of them.
const (
	PublicKeySuffix = ".pub"
	NextKeySuffix   = ".next"
	OldKeySuffix    = ".old"
)

// ClusterKeyCompanion reports whether path names one of the cluster key's companion
// files rather than a cluster private key.
func ClusterKeyCompanion(path string) bool {
	for _, s := range []string{PublicKeySuffix, NextKeySuffix, OldKeySuffix} {
		if strings.HasSuffix(path, s) {
			return true
		}
	}
	return false
}

// HostAddressRule says what HostAddress accepts, for messages.
const HostAddressRule = "an IP address (without brackets or zone) or a DNS name (labels of letters, digits and '-', separated by '.')"

// HostAddress reports whether s is what a host's address may be: an IPv4 or IPv6
// address, or a DNS name. Nothing else reaches a dial or a known_hosts line, so an
// address can never carry a wildcard, a negation, a comma, whitespace or a newline
// into a host key pin.
func HostAddress(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Zone() == ""
	}
	return DNSName(s)
}

// DNSName reports whether s is a DNS name: at most 253 characters of labels of
// letters, digits and '-' (not at either end of a label), separated by '.', with an
// optional final '.'.
func DNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// WorkerPathRule says what WorkerPath accepts, for messages.
const WorkerPathRule = "an absolute, clean path (no '..', '//' or trailing '/') without control characters"

// WorkerPath reports whether s is a path on the worker's machine as resolved plans
// and activity requests carry it: absolute, clean, at most 4096 bytes, and free of
// control characters (a newline in a path would end a line of a log or a file).
func WorkerPath(s string) bool {
	return s != "" && len(s) <= 4096 && filepath.IsAbs(s) && filepath.Clean(s) == s &&
		!strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f })
}
