package compose

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// outsideContent is in a file beside the test root: no message may quote it.
const outsideContent = "OUTSIDE-CONTENT-7f3a"

// invalidRoot copies testdata/invalid into a fresh root and puts, beside the
// root, files that the fixtures try to reach (outside.txt, outside.yaml), and
// in it a symbolic link that leads out (link-out.txt).
func invalidRoot(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.CopyFS(root, os.DirFS(filepath.Join("testdata", "invalid"))); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"outside.txt":  outsideContent + "\n",
		"outside.yaml": "services:\n  base:\n    image: " + outsideContent + "\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../outside.txt", filepath.Join(root, "link-out.txt")); err != nil {
		t.Fatal(err)
	}
	return root
}

// want is a fixture's expectation, from its first line:
//
//	# want: [FILE:]LINE FIELD TEXT
type want struct {
	file  string
	line  int
	field string
	text  string
}

func readWant(t *testing.T, path string) want {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(data), "\n")
	spec, ok := strings.CutPrefix(first, "# want: ")
	if !ok {
		t.Fatalf("%s: the first line must be # want: [FILE:]LINE FIELD TEXT", path)
	}
	w := want{file: filepath.Base(path)}
	pos, rest, _ := strings.Cut(spec, " ")
	if f, l, ok := strings.Cut(pos, ":"); ok {
		w.file, pos = f, l
	}
	if w.line, err = strconv.Atoi(pos); err != nil {
		t.Fatalf("%s: bad line in %q", path, first)
	}
	w.field, w.text, _ = strings.Cut(rest, " ")
	return w
}

// TestInvalidStacks loads every fixture of testdata/invalid: each must be refused
// with an error at its file, line and field, and no message may quote a file
// outside the root or an env file.
func TestInvalidStacks(t *testing.T) {
	root := invalidRoot(t)
	files, err := filepath.Glob(filepath.Join("testdata", "invalid", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("%d invalid fixtures; want at least 20", len(files))
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			w := readWant(t, path)
			_, err := Load(context.Background(), LoadOptions{Root: root, Files: []string{name}, Stack: "bad"})
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Load = %v; want an ErrorList", err)
			}
			for _, e := range list {
				for _, secret := range []string{outsideContent, "hunter2"} {
					if strings.Contains(e.Error(), secret) {
						t.Errorf("a message quotes a file it must not: %s", e)
					}
				}
			}
			for _, e := range list {
				if e.File == w.file && e.Line == w.line && e.Field == w.field && strings.Contains(e.Msg, w.text) {
					prefix := fmt.Sprintf("%s:%d:", w.file, w.line)
					if !strings.HasPrefix(e.Error(), prefix) || !strings.Contains(e.Error(), w.field+": ") {
						t.Errorf("%q does not start with %s and name %s", e.Error(), prefix, w.field)
					}
					return
				}
			}
			t.Errorf("no error at %s:%d %s containing %q; got:\n%v", w.file, w.line, w.field, w.text, err)
		})
	}
}

// TestOutsideSameMessage: a path out of the root gets the same message whether
// or not something is there (a file, a missing file, a symbolic link).
func TestOutsideSameMessage(t *testing.T) {
	root := invalidRoot(t)
	msg := func(file, path string) string {
		_, err := Load(context.Background(), LoadOptions{Root: root, Files: []string{file}, Stack: "bad"})
		var list ErrorList
		if !errors.As(err, &list) || len(list) != 1 {
			t.Fatalf("%s: %v; want one error", file, err)
		}
		return strings.ReplaceAll(list[0].Msg, path, "PATH")
	}
	a := msg("secret-outside.yaml", "../outside.txt")
	for file, path := range map[string]string{"secret-outside-missing.yaml": "../no-such-file.txt", "secret-symlink.yaml": "link-out.txt"} {
		if b := msg(file, path); b != a {
			t.Errorf("%s says %q; secret-outside.yaml says %q", file, b, a)
		}
	}
}
