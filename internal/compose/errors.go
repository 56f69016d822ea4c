package compose

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is one problem with a stack's Compose files. Its text is
// FILE:LINE:COLUMN: FIELD: MSG, the form playbooks.Error uses, for example
//
//	stacks/web/compose.yaml:7:9: services.web.build: swarm cannot build images: ...
//
// FILE is relative to the root directory given to Load. Parts that are unknown
// are left out: a problem with a whole file has no line or field.
type Error struct {
	File   string `json:"file"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
	Field  string `json:"field,omitempty"` // e.g. services.web.ports[1].published
	Msg    string `json:"msg"`
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteString(":" + strconv.Itoa(e.Column))
		}
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem Load found, in file order, then by line. Load
// returns its errors as an ErrorList; errors.As gets at the positions.
type ErrorList []*Error

// shownErrors caps how many errors ErrorList.Error prints.
const shownErrors = 20

func (l ErrorList) Error() string {
	if len(l) == 0 {
		return "no errors"
	}
	var b strings.Builder
	for i, e := range l {
		if i == shownErrors {
			fmt.Fprintf(&b, "\n... and %d more", len(l)-i)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As and errors.Is see each error.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// FieldError is a conversion problem of one field of a service, with the field's
// Compose path relative to the service (deploy.resources.limits.cpus,
// ports[1].published). ServiceSpec returns these (joined), so that a caller that
// built the ServiceConfig from another format (a deployService step) can name
// its own field; Load turns them into Errors with the file and line.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// fieldErrors collects FieldErrors.
type fieldErrors []error

func (fe *fieldErrors) add(field, format string, args ...any) {
	*fe = append(*fe, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (fe fieldErrors) err() error { return errors.Join(fe...) }

// FieldErrors returns the FieldErrors inside err (a ServiceSpec error).
func FieldErrors(err error) []*FieldError {
	if fe, ok := err.(*FieldError); ok {
		return []*FieldError{fe}
	}
	var out []*FieldError
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, FieldErrors(e)...)
		}
	} else if u := errors.Unwrap(err); u != nil {
		out = FieldErrors(u)
	}
	return out
}

// maxErrors caps how many errors one Load collects.
const maxErrors = 200

// report collects the errors of one Load across its files.
type report struct {
	errs    ErrorList
	order   map[string]int // file -> order read, for sorting
	dropped int
}

func newReport() *report { return &report{order: map[string]int{}} }

func (r *report) file(name string) {
	if _, ok := r.order[name]; !ok {
		r.order[name] = len(r.order)
	}
}

func (r *report) add(e *Error) {
	if len(r.errs) >= maxErrors {
		r.dropped++
		return
	}
	for _, o := range r.errs {
		if *o == *e {
			return // the same problem reached twice (a file included twice, a merge key)
		}
	}
	r.file(e.File)
	r.errs = append(r.errs, e)
}

func (r *report) failed() bool { return len(r.errs) > 0 }

func (r *report) list() ErrorList {
	l := slices.Clone(r.errs)
	slices.SortStableFunc(l, func(a, b *Error) int {
		if d := r.order[a.File] - r.order[b.File]; d != 0 {
			return d
		}
		if d := a.Line - b.Line; d != 0 {
			return d
		}
		return a.Column - b.Column
	})
	if r.dropped > 0 {
		l = append(l, &Error{File: l[len(l)-1].File, Msg: fmt.Sprintf("too many errors: %d more were not collected", r.dropped)})
	}
	return l
}

// quote shows a value from a Compose file in a message, shortened. Only values
// of the Compose files themselves are quoted, never a value read from another
// worker file (an env_file, a secret).
func quote(s string) string {
	const max = 64
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max]) + "..."
	}
	return strconv.Quote(s)
}
