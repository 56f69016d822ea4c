package activities

import (
	"strings"
	"testing"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// The parsers below read what a host or an offline bundle hands the worker: none of
// it is trusted. Each must never panic, and what it accepts must hold.
//
//	go test -fuzz=FuzzParseSHA256SUMS -parallel 1 ./activities
//	go test -fuzz=FuzzParseKeyLines -parallel 1 ./activities
//	go test -fuzz=FuzzParseRemoteState -parallel 1 ./activities

// FuzzParseSHA256SUMS: an offline bundle's SHA256SUMS file.
func FuzzParseSHA256SUMS(f *testing.F) {
	sum := strings.Repeat("ab", 32)
	for _, s := range []string{
		sum + "  docker.io_20.10.24_amd64.deb\n",
		sum + " *containerd_1.6_amd64.deb\r\n# comment\n\n",
		sum + "  ./a.deb\n" + strings.ToUpper(sum) + "  ./a.deb\n",
		sum + "  dir/a.deb\n",
		"zz" + sum[2:] + "  a.deb\n",
		sum + "\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		sums, err := parseSHA256SUMS(text)
		if err != nil {
			return
		}
		for name, s := range sums {
			if name == "" || strings.Contains(name, "/") || len(s) != 64 || strings.ToLower(s) != s {
				t.Fatalf("accepted %q -> %q", name, s)
			}
		}
	})
}

// FuzzParseKeyLines: public key lines (authorized_keys, a host's own key) read from
// hosts, and authorized_keys content matched line by line.
func FuzzParseKeyLines(f *testing.F) {
	f.Add("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGw6bq1P7o3vbJ3f8YpP9Qm0XZt2cJwZqgK1Yr7Jm0lZ root@master")
	f.Add(`command="true" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGw6bq1P7o3vbJ3f8YpP9Qm0XZt2cJwZqgK1Yr7Jm0lZ`)
	f.Add("cert-authority ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGw6bq1P7o3vbJ3f8YpP9Qm0XZt2cJwZqgK1Yr7Jm0lZ")
	f.Add("# comment\n\nssh-rsa AAAA")
	f.Fuzz(func(t *testing.T, content string) {
		h := remote.Host{Name: "fuzz", Address: "127.0.0.1", Port: 22}
		lines := splitLines([]byte(content))
		if kl, err := parseKeyLines(h, lines); err == nil {
			for _, k := range kl {
				if k.key.IsZero() || k.line == "" || strings.Contains(k.line, "\n") {
					t.Fatalf("accepted %+v", k)
				}
			}
		}
		for _, l := range lines {
			if key, ok := authorizedKey(l); ok && key.IsZero() {
				t.Fatalf("authorizedKey(%q) ok without a key", l)
			}
		}
	})
}

// FuzzParseRemoteState: /etc/os-release, dpkg-query and apt-cache madison output,
// and .deb file names, as a host or a bundle gives them.
func FuzzParseRemoteState(f *testing.F) {
	f.Add("ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n")
	f.Add("docker.io install ok installed 20.10.24+dfsg1-1+deb12u1+b6\n")
	f.Add(" docker.io | 20.10.24+dfsg1-1+deb12u1+b6 | http://deb.debian.org/debian bookworm/main amd64 Packages\n")
	f.Add("docker.io_20.10.24+dfsg1-1+deb12u1+b6_amd64.deb")
	f.Fuzz(func(t *testing.T, text string) {
		_ = parseOSRelease(text)
		_ = parseDpkgQuery(text)
		_ = parseMadison(text)
		_ = parseKeyValues(text)
		if pkg, version, arch, ok := parseDebName(text); ok && (pkg == "" || version == "" || arch == "") {
			t.Fatalf("parseDebName(%q) accepted %q %q %q", text, pkg, version, arch)
		}
	})
}
