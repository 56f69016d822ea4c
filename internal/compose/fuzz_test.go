package compose

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds Load arbitrary Compose files in a root beside which lies a file
// it must never quote: Load must not panic, must answer with a stack or an
// ErrorList whose every error names a file, and no message may hold the
// outside file's content.
//
//	go test -fuzz=FuzzLoad ./internal/compose
func FuzzLoad(f *testing.F) {
	for _, pattern := range []string{"testdata/invalid/*.yaml", "testdata/invalid/parts/*.yaml", "testdata/valid/*/*.yaml", "testdata/valid/stack/parts/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, path := range files {
			data, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("services:\n  a: &a\n    image: x\n    labels: [*a, *a]\n"))
	f.Add([]byte("include: [{path: [../outside.txt], env_file: link-out.txt}]\n"))
	f.Add([]byte("services:\n  w:\n    image: x\n    env_file: [{path: link-out.txt, required: false}]\n"))
	root := invalidRoot(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(root, "fuzz.yaml"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := Load(context.Background(), LoadOptions{Root: root, Files: []string{"fuzz.yaml"}, Stack: "fz",
			Vars: map[string]string{"A": "1"}})
		if err == nil {
			if st == nil {
				t.Fatal("no stack and no error")
			}
			return
		}
		var list ErrorList
		if !errors.As(err, &list) || len(list) == 0 {
			t.Fatalf("Load = %v (%T); want an ErrorList", err, err)
		}
		for _, e := range list {
			if e.File == "" {
				t.Errorf("an error names no file: %v", e)
			}
			if strings.Contains(e.Error(), outsideContent) {
				t.Fatalf("a message quotes the file outside the root: %v", e)
			}
		}
	})
}
