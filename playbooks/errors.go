package playbooks

import (
	"fmt"
	"sort"
	"strings"

	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// Error is one problem found in a playbook or in an inventory file it includes.
//
// Its text is FILE:LINE:COLUMN: FIELD: MSG, for example
//
//	playbooks/testdata/bad-port.yaml:14:15: spec.inventory.hosts[1].port: must be between 1 and 65535, got 70000
//
// Parts that are unknown are left out: a problem with the whole file (unreadable,
// too large) has no line, column or field ("FILE: MSG"), and a YAML syntax error
// has a line, sometimes a column, and no field ("FILE:LINE: MSG").
type Error struct {
	File   string // file as named to Load or Parse, or an included file
	Line   int    // 1-based; 0 when the problem is with the whole file
	Column int    // 1-based; 0 when unknown
	Field  string // path in YAML names from the file's root, e.g. spec.steps[2].command
	Msg    string // what is wrong and what is expected
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// maxShownErrors caps how many errors ErrorList.Error prints.
const maxShownErrors = 20

// ErrorList is every problem found in a playbook. Load and Parse always return their
// errors as an ErrorList, sorted by file (in the order the files were read), line and
// column, so callers can use errors.As to get at the positions.
type ErrorList []*Error

// Error prints one error per line; after the first 20 it prints how many were left out.
func (l ErrorList) Error() string {
	if len(l) == 0 {
		return "no errors"
	}
	n := min(len(l), maxShownErrors)
	lines := make([]string, 0, n+1)
	for _, e := range l[:n] {
		lines = append(lines, e.Error())
	}
	if len(l) > n {
		lines = append(lines, fmt.Sprintf("... and %d more", len(l)-n))
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As and errors.Is look at the individual errors.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// maxErrors caps how many errors one Parse call collects, so that a large file full of
// mistakes costs little to report.
const maxErrors = 1000

// report collects the errors of one Parse call across all the files it reads.
type report struct {
	errs    ErrorList
	dropped int            // errors found after maxErrors
	files   map[string]int // file name -> order in which it was read, for sorting
	policy  *workerfs.Policy
}

func newReport() *report { return &report{files: map[string]int{}} }

// file registers a file name so that its errors sort after those of earlier files.
func (r *report) file(name string) {
	if _, ok := r.files[name]; !ok {
		r.files[name] = len(r.files)
	}
}

func (r *report) add(e *Error) {
	if len(r.errs) >= maxErrors {
		r.dropped++
		return
	}
	r.file(e.File)
	r.errs = append(r.errs, e)
}

// terse reports whether enough errors were found that costly extras in messages
// (suggestions) would not be shown anyway.
func (r *report) terse() bool { return len(r.errs) >= maxShownErrors }

// sorted returns the errors by file order, line and column; errors at the same place
// keep the order in which they were found.
func (r *report) sorted() ErrorList {
	l := r.errs
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if fa, fb := r.files[a.File], r.files[b.File]; fa != fb {
			return fa < fb
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	if r.dropped > 0 {
		last := l[len(l)-1]
		l = append(l, &Error{File: last.File, Msg: fmt.Sprintf("too many errors: %d more were not collected", r.dropped)})
	}
	return l
}
