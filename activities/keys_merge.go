package activities

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net"
	"strconv"
	"strings"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// This file is the pure logic of the key activities: authorized_keys and
// known_hosts content, merged line by line.

// keyLine is a parsed public key with the line to write for it.
type keyLine struct {
	key  remote.PublicKey
	line string // "TYPE BASE64 COMMENT"
}

func parseKeyLines(h remote.Host, lines []string) ([]keyLine, error) {
	out := make([]keyLine, 0, len(lines))
	for _, l := range lines {
		key, comment, options, err := remote.ParseAuthorizedKey(l)
		if err != nil {
			return nil, hostInvalid(h, "%q is not a public key line: %v", truncate(l, 80), err)
		}
		if len(options) > 0 {
			return nil, hostInvalid(h, "public key line %q has options; give TYPE BASE64 [COMMENT]", truncate(l, 80))
		}
		out = append(out, keyLine{key: key, line: key.AuthorizedLine(comment)})
	}
	return out, nil
}

// authorizedKey parses one authorized_keys line; ok is false for blank and comment
// lines, lines it cannot parse, and cert-authority lines (which trust certificates
// signed by the key, not the key itself): those are never matched or touched.
func authorizedKey(line string) (remote.PublicKey, bool) {
	t := strings.TrimSpace(line)
	if t == "" || strings.HasPrefix(t, "#") {
		return remote.PublicKey{}, false
	}
	key, _, options, err := remote.ParseAuthorizedKey(t)
	if err != nil {
		return remote.PublicKey{}, false
	}
	for _, o := range options {
		if strings.EqualFold(o, "cert-authority") {
			return remote.PublicKey{}, false
		}
	}
	return key, true
}

// splitLines splits file content into lines without their newlines.
func splitLines(content []byte) []string {
	if len(content) == 0 {
		return nil
	}
	s := strings.TrimSuffix(string(content), "\n")
	return strings.Split(s, "\n")
}

func joinLines(lines []string) []byte {
	if len(lines) == 0 {
		return nil
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}

// mergeAuthorizedKeys returns content with every key of add present exactly once
// (the first line that has it is kept, later duplicates are dropped; missing keys are
// appended as add's line) and no line holding a key of remove. Other lines stay as
// they are. When nothing changes, the content is returned unchanged byte for byte.
func mergeAuthorizedKeys(content []byte, add, remove []keyLine) (out []byte, added, removed int) {
	want := map[string]bool{}
	for _, a := range add {
		want[a.key.ID()] = true
	}
	drop := map[string]bool{}
	for _, r := range remove {
		drop[r.key.ID()] = true
	}
	seen := map[string]bool{}
	var lines []string
	for _, line := range splitLines(content) {
		if key, ok := authorizedKey(line); ok {
			blob := key.ID()
			if drop[blob] || (want[blob] && seen[blob]) {
				removed++
				continue
			}
			seen[blob] = true
		}
		lines = append(lines, line)
	}
	for _, a := range add {
		blob := a.key.ID()
		if !seen[blob] {
			seen[blob] = true
			lines = append(lines, a.line)
			added++
		}
	}
	if added == 0 && removed == 0 {
		return content, 0, 0
	}
	return joinLines(lines), added, removed
}

// knownHost is one host for mergeKnownHosts: the names it is known by (normalized as
// in known_hosts: "addr", or "[addr]:port" when the port is not 22) and its keys.
type knownHost struct {
	names []string
	keys  []remote.PublicKey
}

func parseKnownHostsEntries(h remote.Host, entries []KnownHostsEntry) ([]knownHost, error) {
	out := make([]knownHost, 0, len(entries))
	for _, e := range entries {
		if e.Address == "" || strings.ContainsAny(e.Address+e.Name, " \t\n,#*?!|") {
			return nil, hostInvalid(h, "known_hosts entry %q has a bad name or address %q", e.Name, e.Address)
		}
		port := strconv.Itoa(portOrDefault(e.Port))
		kh := knownHost{names: []string{remote.KnownHostsName(net.JoinHostPort(e.Address, port))}}
		if e.Name != "" && e.Name != e.Address {
			kh.names = append(kh.names, remote.KnownHostsName(net.JoinHostPort(e.Name, port)))
		}
		keys, err := parseKeyLines(h, e.Keys)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			kh.keys = append(kh.keys, k.key)
		}
		out = append(out, kh)
	}
	return out, nil
}

// hostPatternMatches tells whether a known_hosts host pattern names exactly name: the
// same text (case-insensitive), or a hashed entry ("|1|SALT|HASH") of it. Wildcard and
// negated patterns never match: such lines are left alone.
func hostPatternMatches(pattern, name string) bool {
	if strings.HasPrefix(pattern, "|1|") {
		parts := strings.Split(pattern[3:], "|")
		if len(parts) != 2 {
			return false
		}
		salt, err1 := base64.StdEncoding.DecodeString(parts[0])
		want, err2 := base64.StdEncoding.DecodeString(parts[1])
		if err1 != nil || err2 != nil {
			return false
		}
		mac := hmac.New(sha1.New, salt)
		mac.Write([]byte(name))
		return hmac.Equal(mac.Sum(nil), want)
	}
	return strings.EqualFold(pattern, name)
}

// mergeKnownHosts returns content in which every name of every host has each of the
// host's keys, once. For each missing (key, names) pair it appends one line naming
// all the names that lack the key. Lines that name only one host's names (plainly or
// hashed) are "managed": dropped when their key duplicates one already listed for
// all their names, or when the host no longer has that key but has another of the
// same type (the host was re-keyed). Keys marked @revoked in the file are never
// added. All other lines are kept as they are; when nothing changes, the content is
// returned unchanged byte for byte.
func mergeKnownHosts(content []byte, hosts []knownHost) (out []byte, added, removed int) {
	type nameKey struct{ name, blob string }
	present := map[nameKey]bool{}
	revoked := map[string]bool{}
	// hostOf resolves a pattern to the index of the host and the name it matches.
	hostOf := func(pattern string) (int, string) {
		for i, kh := range hosts {
			for _, n := range kh.names {
				if hostPatternMatches(pattern, n) {
					return i, n
				}
			}
		}
		return -1, ""
	}
	hasKey := func(kh knownHost, key remote.PublicKey) (same, sameType bool) {
		for _, k := range kh.keys {
			if k.Equal(key) {
				return true, true
			}
			if k.Type() == key.Type() {
				sameType = true
			}
		}
		return false, sameType
	}

	var lines []string
	for _, line := range splitLines(content) {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			lines = append(lines, line)
			continue
		}
		marker, patterns, key, err := remote.ParseKnownHostsLine(t)
		if err != nil || marker != "" {
			if err == nil && marker == "revoked" {
				revoked[key.ID()] = true
			}
			lines = append(lines, line)
			continue
		}
		blob := key.ID()
		// Which of our names does the line give, and is it about one host only?
		owner, managed := -1, len(patterns) > 0
		var names []string
		for _, p := range patterns {
			i, n := hostOf(p)
			if i < 0 || (owner >= 0 && i != owner) {
				managed = false
			}
			if i >= 0 {
				if owner < 0 {
					owner = i
				}
				names = append(names, n)
			}
		}
		if managed {
			same, sameType := hasKey(hosts[owner], key)
			if !same && sameType {
				removed++ // stale: the host has another key of this type now
				continue
			}
			if same {
				dup := true
				for _, n := range names {
					if !present[nameKey{n, blob}] {
						dup = false
					}
				}
				if dup {
					removed++
					continue
				}
			}
		}
		for _, n := range names {
			present[nameKey{n, blob}] = true
		}
		lines = append(lines, line)
	}
	for _, kh := range hosts {
		for _, key := range kh.keys {
			blob := key.ID()
			if revoked[blob] {
				continue
			}
			var missing []string
			for _, n := range kh.names {
				if !present[nameKey{n, blob}] {
					missing = append(missing, n)
					present[nameKey{n, blob}] = true
				}
			}
			if len(missing) > 0 {
				lines = append(lines, remote.KnownHostsLine(missing, key))
				added++
			}
		}
	}
	if added == 0 && removed == 0 {
		return content, 0, 0
	}
	return joinLines(lines), added, removed
}

func portOrDefault(p int) int {
	if p == 0 {
		return 22
	}
	return p
}
