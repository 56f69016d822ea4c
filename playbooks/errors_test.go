package playbooks

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestErrorText(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{File: "playbooks/testdata/bad-port.yaml", Line: 14, Column: 15, Field: "spec.inventory.hosts[1].port", Msg: "must be between 1 and 65535, got 70000"},
			"playbooks/testdata/bad-port.yaml:14:15: spec.inventory.hosts[1].port: must be between 1 and 65535, got 70000"},
		{Error{File: "a.yaml", Line: 3, Msg: "invalid YAML: did not find expected key"},
			"a.yaml:3: invalid YAML: did not find expected key"},
		{Error{File: "a.yaml", Msg: "file does not exist"}, "a.yaml: file does not exist"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

func TestErrorListCap(t *testing.T) {
	var list ErrorList
	for i := 1; i <= 25; i++ {
		list = append(list, &Error{File: "f.yaml", Line: i, Column: 1, Field: "x", Msg: "bad"})
	}
	lines := strings.Split(list.Error(), "\n")
	if len(lines) != 21 || lines[0] != "f.yaml:1:1: x: bad" || lines[19] != "f.yaml:20:1: x: bad" || lines[20] != "... and 5 more" {
		t.Errorf("got:\n%s", list.Error())
	}

	// Callers get at the errors with errors.As, through wrapping too.
	wrapped := fmt.Errorf("load: %w", ErrorList(list[:2]))
	var got ErrorList
	if !errors.As(wrapped, &got) || len(got) != 2 {
		t.Errorf("errors.As to ErrorList failed: %v", got)
	}
	var first *Error
	if !errors.As(wrapped, &first) || first.Line != 1 {
		t.Errorf("errors.As to *Error got %v", first)
	}
}

// TestLoadMissingFile checks the error for a file that is not there.
func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/nope.yaml")
	wantOnly(t, err, &Error{File: "testdata/nope.yaml", Msg: "file does not exist"})
	_, err = Load("testdata")
	wantOnly(t, err, &Error{File: "testdata", Msg: "is a directory, not a file"})
}
