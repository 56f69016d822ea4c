package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// row is one line of the result table.
type row struct {
	section, what, value, target, verdict string
}

// table collects the results in the order they are measured.
type table struct {
	rows []row
}

func (t *table) add(section, what, value, target, verdict string) {
	t.rows = append(t.rows, row{section, what, value, target, verdict})
}

// ratio adds a row for a ratio measured round by round (both sides in the same
// round), as the median of the rounds' ratios. With check, it is judged against
// target: at most target, or at least target when atLeast.
func (t *table) ratio(section, what string, rs []float64, target float64, check, atLeast bool) {
	m := median(rs)
	value := fmt.Sprintf("%.2f× (rounds: %s)", m, joinF(rs))
	tgt, verdict := "", ""
	if check {
		if atLeast {
			tgt = fmt.Sprintf("≥ %.1f×", target)
			verdict = pass(m >= target)
		} else {
			tgt = fmt.Sprintf("≤ %.1f×", target)
			verdict = pass(m <= target)
		}
	}
	t.add(section, what, value, tgt, verdict)
}

func pass(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// print writes the table as aligned text.
func (t *table) print(w io.Writer) {
	widths := [5]int{}
	cells := func(r row) [5]string { return [5]string{r.section, r.what, r.value, r.target, r.verdict} }
	head := row{"benchmark", "measure", "median", "target", ""}
	for _, r := range append([]row{head}, t.rows...) {
		for i, c := range cells(r) {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	for _, r := range append([]row{head}, t.rows...) {
		var b strings.Builder
		for i, c := range cells(r) {
			b.WriteString(c + strings.Repeat(" ", widths[i]-len([]rune(c))+2))
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// markdown writes the table as a Markdown table.
func (t *table) markdown(w io.Writer) {
	fmt.Fprintln(w, "| benchmark | measure | median | target | |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, r := range t.rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r.section, r.what, strings.ReplaceAll(r.value, "|", "\\|"), r.target, r.verdict)
	}
}

// writeMarkdown replaces the generated part of a Markdown file (between the marker
// comments <!-- MARKER:begin --> and <!-- MARKER:end -->), or writes a new file with
// just the table.
func (t *table) writeMarkdown(path, marker, header string) error {
	begin, end := "<!-- "+marker+":begin -->", "<!-- "+marker+":end -->"
	var b strings.Builder
	b.WriteString(begin + "\n")
	b.WriteString(header)
	t.markdown(&b)
	b.WriteString(end)
	old, err := os.ReadFile(path)
	text := string(old)
	i, j := strings.Index(text, begin), strings.Index(text, end)
	switch {
	case err == nil && i >= 0 && j > i:
		text = text[:i] + b.String() + text[j+len(end):]
	case err == nil:
		text += "\n" + b.String() + "\n"
	default:
		text = "# Benchmarks\n\n" + b.String() + "\n"
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

// median is the middle value (the mean of the two middle ones for an even count).
func median[T time.Duration | float64](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ratios divides a by b round by round.
func ratios(a, b []time.Duration) []float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			rs = append(rs, float64(a[i])/float64(b[i]))
		}
	}
	return rs
}

func joinF(fs []float64) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = fmt.Sprintf("%.2f", f)
	}
	return strings.Join(parts, " ")
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

// msStat is "median (min–max, n runs)".
func msStat(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	lo, hi := slices.Min(ds), slices.Max(ds)
	return fmt.Sprintf("%s (%s–%s, n=%d)", ms(median(ds)), strings.TrimSuffix(ms(lo), " ms"), ms(hi), len(ds))
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o755) }
