package playbooks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"text/template"
	"text/template/parse"
	"time"
)

// TemplateData is what an upload template (template: true) is executed with: "." in
// the template. It is the data the UploadFile activity renders with (see
// activities.UploadRequest): the target host's name, address and groups, and the
// playbook's vars. Templates never see key material or other hosts.
//
//	This is {{.Host.Name}} ({{.Host.Address}}).
//	Groups: {{range .Host.Groups}}{{.}} {{end}}
//	{{.Vars.greeting}}
type TemplateData struct {
	Host TemplateHost
	Vars map[string]string
}

// TemplateHost is the target host as a template sees it.
type TemplateHost struct {
	Name    string
	Address string
	Groups  []string
}

// NewTemplateData returns the data an upload template is rendered with for host h.
func NewTemplateData(h Host, vars map[string]string) TemplateData {
	if vars == nil {
		vars = map[string]string{}
	}
	return TemplateData{Host: TemplateHost{Name: h.Name, Address: h.Address, Groups: h.Groups}, Vars: vars}
}

// Limits on the work of an upload template. text/template cannot be stopped from the
// outside: a loop that writes nothing never calls the output writer, where a deadline
// could be checked. So loops whose length is not the data's are refused when the
// template is parsed (checkTemplateWork), and execution is bounded in output and time
// on top (RenderTemplate).
const (
	// maxTemplateWork bounds the template's work as counted from its parse tree: each
	// node counted as many times as the ranges around it run ({{range N}} over an
	// integer constant N times, a range over data templateDataRange times), through
	// the templates it calls. text/template takes about 100 ns a node: a template
	// within the bound renders in well under TemplateBudget.
	maxTemplateWork   = 5_000_000
	templateDataRange = 1000
	// maxTemplateCalls bounds the {{template}} calls followed while counting.
	maxTemplateCalls = 10_000
	// TemplateBudget is how long one rendering may take: a template renders a
	// config file in microseconds.
	TemplateBudget = 2 * time.Second
	// MaxTemplateOutput is how much one rendering may write: it is held in memory.
	MaxTemplateOutput = maxUploadSize
)

// NewTemplate parses an upload template the way it is rendered: Go text/template with
// its built-in functions only, and an error (not "<no value>") for a missing key such
// as an undefined {{.Vars.x}}. Templates whose loops are not bounded by the data are
// refused (see checkTemplateWork).
func NewTemplate(name, text string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	if err := checkTemplateWork(t, templateDataRange); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	return t, nil
}

// CheckTemplateData checks t's work again (see checkTemplateWork) for data whose
// longest list or map (vars, a host's groups) has longest entries, when that is more
// than NewTemplate assumed: nested ranges over many vars could run long without
// writing.
func CheckTemplateData(t *template.Template, longest int) error {
	if int64(longest) <= templateDataRange {
		return nil
	}
	if err := checkTemplateWork(t, int64(longest)); err != nil {
		return fmt.Errorf("template: %w", err)
	}
	return nil
}

// ErrTemplateBudget is returned by RenderTemplate for a rendering that runs past its
// output or time budget.
var ErrTemplateBudget = errors.New("template exceeds its budget")

// RenderTemplate executes t with data into w, failing once more than limit bytes are
// written or the rendering takes longer than budget; after an error, w is no longer
// written to. Execution runs in a goroutine;
// the writer fails every Write after the deadline, so a template that writes stops at
// once. One that loops without writing cannot be stopped: checkTemplateWork refuses
// the loops that could run long, and RenderTemplate returns at the deadline anyway,
// leaving such a goroutine to finish on its own.
func RenderTemplate(t *template.Template, data any, w io.Writer, limit int64, budget time.Duration) error {
	bw := &budgetWriter{w: w, n: limit, limit: limit}
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("template panicked: %v", r)
			}
		}()
		done <- t.Execute(bw, data)
	}()
	timer := time.NewTimer(budget)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		bw.stop()
		return fmt.Errorf("%w: rendering takes longer than %s", ErrTemplateBudget, budget)
	}
}

// RenderTemplateBytes is RenderTemplate into memory.
func RenderTemplateBytes(t *template.Template, data any, limit int64, budget time.Duration) ([]byte, error) {
	var out bytes.Buffer
	if err := RenderTemplate(t, data, &out, limit, budget); err != nil {
		return nil, err // out may still be written to: it is dropped
	}
	return out.Bytes(), nil // Execute has returned: nothing writes to out any more
}

// budgetWriter passes writes on to w until n bytes were written or it is stopped.
// Once stop returns, nothing more reaches w.
type budgetWriter struct {
	w       io.Writer
	n       int64 // bytes left
	limit   int64
	mu      sync.Mutex
	stopped bool
}

func (b *budgetWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return 0, fmt.Errorf("%w: stopped at the deadline", ErrTemplateBudget)
	}
	b.n -= int64(len(p))
	if b.n < 0 {
		return 0, fmt.Errorf("%w: renders to more than %s", ErrTemplateBudget, byteSize(b.limit))
	}
	return b.w.Write(p)
}

func (b *budgetWriter) stop() {
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
}

// checkTemplateWork refuses templates whose execution is not bounded by the data:
//
//   - more than maxTemplateWork nodes run, counting each node of the parse tree as
//     many times as the ranges around it run: {{range N}} over an integer constant
//     (or a variable set to one) N times, a range over data templateDataRange times;
//   - range over a value computed by a function other than index and slice (len
//     gives a number with no data behind it);
//   - templates that call themselves, directly or through others: recursion can
//     branch exponentially without writing a byte.
//
// What remains unbounded by this check: ranges over data as long as the data (the
// plan's vars and groups, within maxPlanJSON), and the cost of single built-in calls
// (printf widths are capped at 1e6 by fmt). RenderTemplate bounds those that write in
// time and output; one that writes nothing cannot be interrupted and finishes on its
// own after RenderTemplate has returned.
func checkTemplateWork(t *template.Template, dataRange int64) error {
	w := &workCheck{t: t, vars: map[string]int64{}, dataRange: dataRange, dot: -1}
	for _, tt := range t.Templates() {
		if tt.Tree == nil || tt.Tree.Root == nil {
			continue
		}
		if err := w.tree(tt.Name(), 1, -1); err != nil {
			return err
		}
	}
	return nil
}

type workCheck struct {
	dataRange int64 // what a range over data counts for
	work      int64 // nodes counted so far, times the ranges around them
	calls     int   // {{template}} calls followed
	t         *template.Template
	cur       *parse.Tree // the tree being walked, for positions
	stack     []string
	vars      map[string]int64 // variables set to an integer constant, by name
	dot       int64            // what dot is when it is an integer constant (at most), or -1
}

func (w *workCheck) tree(name string, mult, dot int64) error {
	for _, s := range w.stack {
		if s == name {
			return fmt.Errorf("template %q calls itself (through %v): recursive templates are not supported", name, w.stack)
		}
	}
	tt := w.t.Lookup(name)
	if tt == nil || tt.Tree == nil || tt.Tree.Root == nil {
		return nil // an undefined template fails at execution
	}
	w.stack = append(w.stack, name)
	prev, prevDot := w.cur, w.dot
	w.cur, w.dot = tt.Tree, dot
	defer func() { w.stack, w.cur, w.dot = w.stack[:len(w.stack)-1], prev, prevDot }()
	return w.node(tt.Tree.Root, mult)
}

func (w *workCheck) node(n parse.Node, mult int64) error {
	if l, ok := n.(*parse.ListNode); n == nil || ok && l == nil {
		return nil // no else branch
	}
	if err := w.count(n, mult); err != nil {
		return err
	}
	switch n := n.(type) {
	case *parse.ListNode:
		for _, c := range n.Nodes {
			if err := w.node(c, mult); err != nil {
				return err
			}
		}
	case *parse.ActionNode:
		w.decl(n.Pipe)
	case *parse.IfNode:
		return w.branch(&n.BranchNode, mult)
	case *parse.WithNode:
		// Inside, dot is the pipeline's value: {{with 5}}{{range .}} ranges over 5.
		w.decl(n.Pipe)
		v, ok := w.constant(n.Pipe)
		if !ok {
			v = -1
		}
		if err := w.withDot(v, func() error { return w.node(n.List, mult) }); err != nil {
			return err
		}
		return w.node(n.ElseList, mult)
	case *parse.RangeNode:
		count, err := w.rangeLength(n.Pipe)
		if err != nil {
			return fmt.Errorf("%s: %w", w.pos(n), err)
		}
		inner := mult * min(count, maxTemplateWork+1) // no overflow: both are at most maxTemplateWork+1
		if err := w.count(n, inner); err != nil {     // its body runs at least once a round: say so here
			return err
		}
		w.work -= inner
		// Inside a range over N, dot and the range's variables are integers below N.
		elem := int64(-1)
		if _, ok := w.constant(n.Pipe); ok {
			elem = count
			for _, v := range n.Pipe.Decl {
				w.vars[v.Ident[0]] = max(w.vars[v.Ident[0]], count)
			}
		}
		if err := w.withDot(elem, func() error { return w.node(n.List, inner) }); err != nil {
			return err
		}
		return w.node(n.ElseList, mult)
	case *parse.TemplateNode:
		if w.calls++; w.calls > maxTemplateCalls {
			return fmt.Errorf("%s: the template calls templates more than %d times", w.pos(n), maxTemplateCalls)
		}
		dot, ok := w.constant(n.Pipe)
		if !ok {
			dot = -1
		}
		return w.tree(n.Name, mult, dot)
	}
	return nil
}

// withDot runs f with dot set to v (-1: not a constant).
func (w *workCheck) withDot(v int64, f func() error) error {
	prev := w.dot
	w.dot = v
	defer func() { w.dot = prev }()
	return f()
}

// count adds mult to the work, failing past maxTemplateWork at node n.
func (w *workCheck) count(n parse.Node, mult int64) error {
	w.work += mult
	if w.work > maxTemplateWork {
		return fmt.Errorf("%s: the template does too much work: at most %d actions and text pieces may run in all "+
			"(a range multiplies what it holds by its length, a range over data counted as %d)",
			w.pos(n), maxTemplateWork, w.dataRange)
	}
	return nil
}

func (w *workCheck) branch(b *parse.BranchNode, mult int64) error {
	w.decl(b.Pipe)
	if err := w.node(b.List, mult); err != nil {
		return err
	}
	return w.node(b.ElseList, mult)
}

// decl records variables set to an integer constant ({{$n := 5}}).
func (w *workCheck) decl(p *parse.PipeNode) {
	if p == nil || len(p.Decl) != 1 {
		return
	}
	name := p.Decl[0].Ident[0]
	if v, ok := w.constant(p); ok {
		w.vars[name] = max(w.vars[name], v)
	}
}

// constant is the value of a pipeline that is an integer constant, a parenthesized
// one, or a variable or dot set to one (at most).
func (w *workCheck) constant(p *parse.PipeNode) (int64, bool) {
	if p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return 0, false
	}
	switch a := p.Cmds[0].Args[0].(type) {
	case *parse.NumberNode:
		if a.IsInt {
			return a.Int64, true
		}
		if a.IsUint {
			return maxTemplateWork + 1, true
		}
	case *parse.PipeNode:
		return w.constant(a)
	case *parse.DotNode:
		if w.dot >= 0 {
			return w.dot, true
		}
	case *parse.VariableNode:
		if len(a.Ident) == 1 {
			v, ok := w.vars[a.Ident[0]]
			return v, ok
		}
	}
	return 0, false
}

// rangeLength bounds how many times a range over pipeline p runs: an integer
// constant's value, or templateDataRange for data (a field, a variable, dot, or index
// and slice of them).
func (w *workCheck) rangeLength(p *parse.PipeNode) (int64, error) {
	if v, ok := w.constant(p); ok {
		return max(v, 0), nil
	}
	for _, c := range p.Cmds {
		for _, a := range c.Args {
			if id, ok := a.(*parse.IdentifierNode); ok && id.Ident != "index" && id.Ident != "slice" {
				return 0, fmt.Errorf("range over the result of %s is not supported; range over the data itself (.Host.Groups, .Vars)", id.Ident)
			}
			if sub, ok := a.(*parse.PipeNode); ok {
				if _, err := w.rangeLength(sub); err != nil {
					return 0, err
				}
			}
		}
	}
	return w.dataRange, nil
}

// pos is where node n is, as text/template names it: "NAME:LINE:COL".
func (w *workCheck) pos(n parse.Node) string {
	if loc, _ := w.cur.ErrorContext(n); loc != "" {
		return loc
	}
	return w.cur.ParseName
}
