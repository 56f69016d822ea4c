package playbooks

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/clusterflow/clusterflow/internal/rules"
)

// This file is a small strict decoder over yaml.v3 node trees. Every read goes through
// it, so every value keeps its position, unknown keys are errors that name their path,
// and a wrong type is described in the words of the format ("a list of strings"), not
// of Go.

// file is one playbook or inventory file being read.
type file struct {
	name    string // as shown in errors
	dir     string // absolute directory that relative paths in the file are resolved in
	showDir string // directory as shown in errors, for the names of included files
	r       *report
}

func (f *file) errorAt(n *yaml.Node, path, format string, args ...any) {
	f.r.add(&Error{File: f.name, Line: n.Line, Column: n.Column, Field: path, Msg: fmt.Sprintf(format, args...)})
}

func (f *file) fileError(format string, args ...any) {
	f.r.add(&Error{File: f.name, Msg: fmt.Sprintf(format, args...)})
}

// fieldPath and indexPath build field paths in YAML names: spec.steps[2].command.
func fieldPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// plainKey matches map keys that read well after a dot in a field path.
var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// keyPath is fieldPath for user-chosen keys (env, vars), which may need quoting.
func keyPath(path, key string) string {
	if plainKey.MatchString(key) {
		return fieldPath(path, key)
	}
	return path + "[" + quote(key) + "]"
}

// quote quotes a value from the input for a message, shortened if it is long.
func quote(s string) string {
	const max = 64
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max]) + "..."
	}
	return strconv.Quote(s)
}

// describe says what a node is, for "must be X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "nothing (null)"
		case "!!str":
			return "the string " + quote(n.Value)
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return n.Value
		case "!!timestamp":
			return "the date " + n.Value
		}
		return quote(n.Value)
	}
	return "something else"
}

// fields is a mapping read strictly: keys are unique strings.
type fields struct {
	node *yaml.Node
	path string
	keys []*yaml.Node          // key nodes in file order
	vals map[string]*yaml.Node // key -> value
	at   map[string]*yaml.Node // key -> key node
}

// mapping reads n as a mapping. Keys must be scalars and unique; a duplicate is
// reported at its second occurrence. It returns nil after reporting when n is not a
// mapping.
func (f *file) mapping(n *yaml.Node, path string) *fields {
	if n.Kind != yaml.MappingNode {
		f.errorAt(n, path, "must be a mapping (key: value lines), got %s", describe(n))
		return nil
	}
	m := &fields{
		node: n, path: path,
		vals: map[string]*yaml.Node{},
		at:   map[string]*yaml.Node{},
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!null" {
			f.errorAt(k, path, "keys must be plain names, got %s", describe(k))
			continue
		}
		if first, dup := m.at[k.Value]; dup {
			f.errorAt(k, keyPath(path, k.Value), "duplicate key %s (first at line %d)", quote(k.Value), first.Line)
			continue
		}
		m.keys = append(m.keys, k)
		m.vals[k.Value] = v
		m.at[k.Value] = k
	}
	return m
}

// checkKeys reports every key not in allowed, suggesting the closest allowed name.
func (f *file) checkKeys(m *fields, allowed ...string) {
	for _, k := range m.keys {
		if !slices.Contains(allowed, k.Value) {
			f.errorAt(k, keyPath(m.path, k.Value), "%s", f.unknownField(k.Value, allowed))
		}
	}
}

func (f *file) unknownField(key string, allowed []string) string {
	if f.r.terse() {
		return fmt.Sprintf("unknown field %s", quote(key))
	}
	if s := suggest(key, allowed); s != "" {
		return fmt.Sprintf("unknown field %s (did you mean %s?)", quote(key), quote(s))
	}
	return fmt.Sprintf("unknown field %s; fields here are: %s", quote(key), strings.Join(allowed, ", "))
}

// get returns the value of key and its path, or nil when the key is absent.
func (m *fields) get(key string) (*yaml.Node, string) {
	return m.vals[key], fieldPath(m.path, key)
}

// missing reports a required key at the position of the mapping that lacks it.
func (f *file) missing(m *fields, key, format string, args ...any) {
	msg := "is required"
	if format != "" {
		msg += "; " + fmt.Sprintf(format, args...)
	}
	f.errorAt(m.node, fieldPath(m.path, key), "%s", msg)
}

// str reads a string. Plain scalars that YAML would type as numbers, booleans or dates
// are taken as written ("10", "true"), so that argv entries such as [sleep, 10] need no
// quotes; null, lists and mappings are errors.
func (f *file) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		hint := ""
		if n.Kind == yaml.ScalarNode && n.Value == "~" {
			hint = ` (YAML reads ~ as null; write "~" in quotes for the text)`
		}
		f.errorAt(n, path, "must be a string, got %s%s", describe(n), hint)
		return "", false
	}
	return n.Value, true
}

// nonEmptyStr is str that also refuses "".
func (f *file) nonEmptyStr(n *yaml.Node, path string) (string, bool) {
	s, ok := f.str(n, path)
	if ok && s == "" {
		f.errorAt(n, path, "must not be empty")
		return "", false
	}
	return s, ok
}

// decimal matches the integers this format accepts: decimal, no leading zeros, no
// underscores, no + sign. YAML also reads 0x10, 0o17, 017 and 1_000 as integers; they
// are refused so that a value always means what it looks like.
var decimal = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// integer reads an integer within [lo, hi].
func (f *file) integer(n *yaml.Node, path string, lo, hi int) (int, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" && n.Tag != "!!str" {
		f.errorAt(n, path, "must be an integer, got %s", describe(n))
		return 0, false
	}
	if n.Tag == "!!str" {
		hint := ""
		if decimal.MatchString(n.Value) {
			hint = " (write the number without quotes)"
		}
		f.errorAt(n, path, "must be an integer, got %s%s", describe(n), hint)
		return 0, false
	}
	if !decimal.MatchString(n.Value) {
		f.errorAt(n, path, "must be a decimal integer without leading zeros, signs or underscores, got %s", n.Value)
		return 0, false
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil || v < lo || v > hi {
		f.errorAt(n, path, "must be between %d and %d, got %s", lo, hi, n.Value)
		return 0, false
	}
	return v, true
}

// anyInteger reads an integer of any value: its range is a rule of the field, which
// Normalize checks.
func (f *file) anyInteger(n *yaml.Node, path string) (int, bool) {
	return f.integer(n, path, math.MinInt, math.MaxInt)
}

// boolean reads true or false (YAML also accepts True and TRUE).
func (f *file) boolean(n *yaml.Node, path string) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		f.errorAt(n, path, "must be true or false, got %s", describe(n))
		return false, false
	}
	return strings.EqualFold(n.Value, "true"), true
}

// duration reads a Go duration string ("90s", "10m", "1h30m") within [lo, hi].
func (f *file) duration(n *yaml.Node, path string, lo, hi time.Duration) (time.Duration, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		f.errorAt(n, path, `must be a duration with a unit such as "90s", "10m" or "1h30m", got %s`, describe(n))
		return 0, false
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		f.errorAt(n, path, `must be a duration with a unit such as "90s", "10m" or "1h30m", got %s`, quote(n.Value))
		return 0, false
	}
	if d < lo || d > hi {
		f.errorAt(n, path, "must be between %s and %s, got %s", shortDuration(lo), shortDuration(hi), n.Value)
		return 0, false
	}
	return d, true
}

// anyDuration reads a duration of any length: its range is a rule of the field,
// which Normalize checks.
func (f *file) anyDuration(n *yaml.Node, path string) (time.Duration, bool) {
	return f.duration(n, path, math.MinInt64, math.MaxInt64)
}

// shortDuration prints 24h rather than 24h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// list reads n as a list; what says what its items must be, for the message.
func (f *file) list(n *yaml.Node, path, what string) ([]*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		f.errorAt(n, path, "must be a list of %s, got %s", what, describe(n))
		return nil, false
	}
	return n.Content, true
}

// stringList reads a list of non-empty strings.
func (f *file) stringList(n *yaml.Node, path string) ([]string, bool) {
	items, ok := f.list(n, path, "strings")
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(items))
	for i, item := range items {
		s, ok1 := f.nonEmptyStr(item, indexPath(path, i))
		ok = ok && ok1
		out = append(out, s)
	}
	return out, ok
}

// stringMap reads a mapping of names (envName) to strings.
func (f *file) stringMap(n *yaml.Node, path string) (map[string]string, bool) {
	m := f.mapping(n, path)
	if m == nil {
		return nil, false
	}
	out := make(map[string]string, len(m.keys))
	ok := len(m.keys) == len(n.Content)/2 // false when mapping reported a key
	for _, k := range m.keys {
		p := keyPath(path, k.Value)
		if !rules.EnvName(k.Value) {
			f.errorAt(k, p, "name %s must be letters, digits and _, not starting with a digit", quote(k.Value))
			ok = false
			continue
		}
		v, ok1 := f.str(m.vals[k.Value], p)
		ok = ok && ok1
		out[k.Value] = v
	}
	return out, ok
}

// suggest returns the candidate closest to got, if it is close enough to be a typo.
func suggest(got string, candidates []string) string {
	if len(got) > 64 {
		return ""
	}
	best, bestDist := "", -1
	for _, c := range candidates {
		d := editDistance(strings.ToLower(got), strings.ToLower(c))
		limit := max(1, min(3, len(c)/3))
		if d <= limit && (bestDist < 0 || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b, over bytes:
// insertions, deletions, substitutions and swaps of neighbours ("prot" for "port")
// each count one.
func editDistance(a, b string) int {
	// d[i][j] is the distance between a[:i] and b[:j]; three rows are enough.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
