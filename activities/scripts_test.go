package activities

import (
	"io/fs"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestScripts: every file in scripts/ is loaded by some activity, has a header, and
// parses as what is sent (sh -n: syntax only, nothing runs). `make lint` runs
// shellcheck on the files as well.
func TestScripts(t *testing.T) {
	files, err := fs.Glob(scriptFiles, "scripts/*.sh")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimPrefix(f, "scripts/"))
	}
	var used []string
	for name := range loaded {
		used = append(used, name)
	}
	slices.Sort(names)
	slices.Sort(used)
	if !slices.Equal(names, used) {
		t.Fatalf("scripts/ holds %v, the activities load %v", names, used)
	}
	for _, name := range names {
		s := loaded[name]
		raw, _ := scriptFiles.ReadFile("scripts/" + name)
		if head := "#!/bin/sh\n# " + name; !strings.HasPrefix(string(raw), head+" ") && !strings.HasPrefix(string(raw), head+":") {
			t.Errorf("%s: the header must start with #!/bin/sh and a line naming the script and its arguments", name)
		}
		if s.body == "" || strings.HasPrefix(s.body, "#!") {
			t.Errorf("%s: body %q", name, s.body)
		}
		if out, err := exec.Command("/bin/sh", "-n", "-c", s.body).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
}
