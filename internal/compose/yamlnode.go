package compose

import (
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/tree"
	"gopkg.in/yaml.v3"
)

// A Compose file is also read with gopkg.in/yaml.v3 into nodes, for the one
// thing compose-go does not give: the line of a key. This file walks those nodes
// (aliases and merge keys included) and finds the node of a path.

// deref follows aliases.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// entry is a key and its value in a mapping.
type entry struct{ key, value *yaml.Node }

// maxDepth bounds how deep nodes nest, aliases followed: an alias may name a
// node that contains it, and a walk must end.
const maxDepth = 64

// entries are the pairs of a mapping, with YAML merge keys (<<: *base) expanded
// first so that explicit keys come after (and override) merged ones.
func entries(n *yaml.Node) []entry { return mergedEntries(n, 0) }

func mergedEntries(n *yaml.Node, depth int) []entry {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode || depth > maxDepth {
		return nil
	}
	var merged, own []entry
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			v = deref(v)
			if v == nil {
				continue
			}
			if v.Kind == yaml.SequenceNode {
				for _, m := range v.Content {
					merged = append(merged, mergedEntries(m, depth+1)...)
				}
			} else {
				merged = append(merged, mergedEntries(v, depth+1)...)
			}
			continue
		}
		own = append(own, entry{k, v})
	}
	return append(merged, own...)
}

// child is the value of key in mapping n (the last one, as a merge overrides).
func child(n *yaml.Node, key string) *yaml.Node {
	var found *yaml.Node
	for _, e := range entries(n) {
		if e.key.Value == key {
			found = e.value
		}
	}
	return deref(found)
}

// isNull reports a missing or null node.
func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// fieldPath is a path to a node: mapping keys and list indexes. Shown as
// services.web.ports[1].published; as a tree.Path pattern, a list index is "[]".
type fieldPath []string

func (p fieldPath) key(k string) fieldPath { return append(p[:len(p):len(p)], k) }
func (p fieldPath) index(i int) fieldPath  { return append(p[:len(p):len(p)], "["+strconv.Itoa(i)+"]") }

func (p fieldPath) String() string {
	var b strings.Builder
	for i, s := range p {
		if i > 0 && !strings.HasPrefix(s, "[") {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}

func (p fieldPath) pattern() tree.Path {
	var t tree.Path
	for _, s := range p {
		if strings.HasPrefix(s, "[") {
			s = tree.PathMatchList
		}
		t = t.Next(s)
	}
	return t
}

// locate returns the node that best shows where path is under n (the key of
// the last mapping part reached, or the list item), and how many parts of path
// it matched. A part that is a number ("0") or an index ("[0]") selects a list
// item.
func locate(n *yaml.Node, path []string) (*yaml.Node, int) {
	pos, cur := n, deref(n)
	for i, part := range path {
		switch {
		case cur != nil && cur.Kind == yaml.MappingNode:
			var k, v *yaml.Node
			for _, e := range entries(cur) {
				if e.key.Value == part {
					k, v = e.key, e.value
				}
			}
			if k == nil {
				return pos, i
			}
			pos, cur = k, deref(v)
		case cur != nil && cur.Kind == yaml.SequenceNode:
			idx, err := strconv.Atoi(strings.Trim(part, "[]"))
			if err != nil {
				// a key of a mapping written as a list: environment: [KEY=value]
				idx = slices.IndexFunc(cur.Content, func(n *yaml.Node) bool {
					n = deref(n)
					return n.Kind == yaml.ScalarNode && (n.Value == part || strings.HasPrefix(n.Value, part+"="))
				})
			}
			if idx < 0 || idx >= len(cur.Content) {
				return pos, i
			}
			pos = cur.Content[idx]
			cur = deref(pos)
		default:
			return pos, i
		}
	}
	return pos, len(path)
}

// errorPath matches the path compose-go puts in its messages, in its three
// forms: "services.web.ports.0 must be ...", "'services[web].deploy.replicas'
// ...", and "error while interpolating services.web.image: ...".
var errorPath = regexp.MustCompile(`'?([A-Za-z0-9_.\-\[\]]+)'?`)

// splitErrorPath turns a compose-go message path into parts: services[web] is
// services, web; a number is a list index ("ports.0" is ports, [0]); an
// unknown index ("[]") ends the path.
func splitErrorPath(s string) []string {
	parts := splitPathParts(s)
	for i, p := range parts {
		if p == "" {
			return parts[:i]
		}
		if _, err := strconv.Atoi(p); err == nil {
			parts[i] = "[" + p + "]"
		}
	}
	return parts
}

func splitPathParts(s string) []string {
	var parts []string
	for _, p := range strings.Split(s, ".") {
		for p != "" {
			i := strings.IndexByte(p, '[')
			if i < 0 {
				parts = append(parts, p)
				break
			}
			if i > 0 {
				parts = append(parts, p[:i])
			}
			j := strings.IndexByte(p[i:], ']')
			if j < 0 {
				parts = append(parts, p[i+1:])
				break
			}
			parts = append(parts, p[i+1:i+j])
			p = p[i+j+1:]
		}
	}
	return parts
}
