package activities

import (
	"errors"
	"strings"

	"go.temporal.io/sdk/temporal"
)

// Small helpers for what hosts print and what messages say.

// parseKeyValues reads KEY=VALUE lines.
func parseKeyValues(out string) map[string]string {
	m := map[string]string{}
	for line := range strings.Lines(out) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			m[k] = v
		}
	}
	return m
}

// lastOutputLine is the last non-empty line of s, at most 200 bytes.
func lastOutputLine(s string) string {
	s = strings.TrimRight(s, "\n\r\t ")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// oneLine folds s onto one line of at most 300 bytes.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return truncate(s, 300)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// short is an ID cut to 12 characters, as docker prints them.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// errorText is the message of an error, without Temporal's decorations.
func errorText(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Message()
	}
	return err.Error()
}
