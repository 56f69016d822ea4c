package playbooks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds Parse arbitrary bytes: it must never panic or hang, and must either
// return a plan that is complete or an ErrorList that says where the problem is.
//
//	go test -fuzz=FuzzParse ./playbooks
func FuzzParse(f *testing.F) {
	var seeds []string
	for _, pattern := range []string{"*.yaml", "testdata/valid/*.yaml", "testdata/valid/*/*.yaml", "testdata/invalid/*.yaml", "testdata/invalid/*/*.yaml"} {
		matches, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, matches...)
	}
	for _, path := range seeds {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	// Inputs that made yaml.v3 panic in some version (go-yaml/yaml issues 560, 665,
	// 666, 833), and merge keys in a flow mapping.
	for _, s := range []string{"a:\n.\n-\n", "#\n-\n-\n0", "0: [:!00 \xef", "! !00 \xf6", "#\n-\n{", "{{},<<}"} {
		f.Add([]byte(s))
	}
	// Relative includes and upload sources resolve in the valid fixtures.
	dir, err := filepath.Abs(filepath.Join("testdata", "valid"))
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		plan, err := Parse("fuzz.yaml", data, dir)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error is not a non-empty ErrorList: %T %v", err, err)
			}
			for _, e := range list {
				if e.File == "" || e.Msg == "" {
					t.Fatalf("error without file or message: %#v", e)
				}
			}
			_ = err.Error()
			return
		}
		if plan == nil || plan.Name == "" || len(plan.Hosts) == 0 || len(plan.Steps) == 0 {
			t.Fatalf("accepted an incomplete plan: %+v", plan)
		}
		for _, s := range plan.Steps {
			if len(s.Hosts) == 0 || (s.Kind == KindRun) != (s.Run != nil) || (s.Kind == KindUpload) != (s.Upload != nil) || s.Parallel < 1 || s.Attempts < 1 {
				t.Fatalf("accepted an incomplete step: %+v", s)
			}
		}
		for _, h := range plan.Hosts {
			if h.Port < 1 || h.User == "" || h.Address == "" || !filepath.IsAbs(h.KnownHostsFile) {
				t.Fatalf("accepted an incomplete host: %+v", h)
			}
		}
	})
}

// FuzzParseSums feeds the SHA256SUMS parser (consul's sha256sums file) arbitrary
// text: no panic, and every accepted entry is a lower-case hex SHA-256 with a name.
//
//	go test -fuzz=FuzzParseSums -parallel 1 ./playbooks
func FuzzParseSums(f *testing.F) {
	sum := strings.Repeat("0f", 32)
	for _, s := range []string{
		sum + "  consul_1.22.7_linux_amd64.zip\n" + sum + " *consul\n",
		"# sums\n\n" + strings.ToUpper(sum) + "  ./consul\r\n",
		sum + "consul\n",
		"not a sum\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		sums, bad := parseSums(text)
		if bad != "" {
			if sums != nil {
				t.Fatalf("a bad line (%s) and sums", bad)
			}
			return
		}
		for name, s := range sums {
			if name == "" || !isSHA256(s) || strings.ToLower(s) != s {
				t.Fatalf("accepted %q -> %q", name, s)
			}
		}
	})
}
