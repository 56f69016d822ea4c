package rules

import (
	"strings"
	"testing"
)

func TestRules(t *testing.T) {
	cases := []struct {
		rule string
		fn   func(string) bool
		good []string
		bad  []string
	}{
		{"UserName", UserName,
			[]string{"root", "ops", "_apt", "Deploy", "a.b-c_d", "host$", strings.Repeat("u", 32)},
			[]string{"", "1user", "-rf", ".hidden", "x y", "x; rm -rf /", "a:b", "a$b", strings.Repeat("u", 33), "1000"}},
		{"Account", Account,
			[]string{"root", "www-data", "0", "1000", "4294967295"},
			[]string{"", "Root User", "-1", "12345678901", "1a"}},
		{"DebianVersion", DebianVersion,
			[]string{"20.10.24", "20.10.24+dfsg1-1+deb12u1", "5:27.3.1-1~debian.12~bookworm", "1.22.7-1"},
			[]string{"", "latest", "v1.2", "20.10 || true", "1.0;rm", "1 2"}},
		{"InterfaceName", InterfaceName,
			[]string{"eth0", "ens3", "br-lan", "wg0.100", "veth@if5", strings.Repeat("e", 15)},
			[]string{"", "0eth", "eth/0", "eth 0", `eth1" }}`, strings.Repeat("e", 16)}},
		{"SHA256", SHA256,
			[]string{strings.Repeat("a0", 32)},
			[]string{"", "abc", strings.Repeat("A0", 32), strings.Repeat("g0", 32), strings.Repeat("a0", 33)}},
		{"EnvName", EnvName,
			[]string{"PATH", "_x", "a1"},
			[]string{"", "1FOO", "A-B", "A B", "A=B"}},
		{"ClusterKeyCompanion", ClusterKeyCompanion,
			[]string{"/k/cluster.pub", "/k/cluster.next", "/k/cluster.old", "/k/cluster.next.pub"},
			[]string{"/k/cluster", "/k/cluster_ed25519", "/k/publisher"}},
	}
	for _, c := range cases {
		for _, s := range c.good {
			if !c.fn(s) {
				t.Errorf("%s(%q) = false, want true", c.rule, s)
			}
		}
		for _, s := range c.bad {
			if c.fn(s) {
				t.Errorf("%s(%q) = true, want false", c.rule, s)
			}
		}
	}
}
