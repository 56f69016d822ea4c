// Package redact masks secrets in log records: a slog.Handler wrapper for the process
// logger, which the Temporal SDK's and the embedded server's logs also go through.
//
// It masks the value of any attribute whose key looks secret (see SecretKey), and,
// inside every string it logs (the message, string values, errors and other values
// as printed), PEM private key blocks and Docker swarm join tokens (SWMTKN-...).
package redact

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"unicode"
)

// Mask replaces a secret value.
const Mask = "[REDACTED]"

// Handler wraps another slog.Handler and masks secrets before it sees them.
type Handler struct{ next slog.Handler }

// NewHandler returns next behind redaction.
func NewHandler(next slog.Handler) *Handler { return &Handler{next: next} }

func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(Attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = Attr(a)
	}
	return &Handler{next: h.next.WithAttrs(red)}
}

func (h *Handler) WithGroup(name string) slog.Handler { return &Handler{next: h.next.WithGroup(name)} }

// Attr returns a with its value masked when the key looks secret, and secrets masked
// inside its value otherwise (recursively for groups).
func Attr(a slog.Attr) slog.Attr {
	a.Value = a.Value.Resolve()
	if a.Value.Kind() != slog.KindGroup && SecretKey(a.Key) && !fingerprint.MatchString(a.Value.String()) {
		return slog.String(a.Key, Mask)
	}
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); mayHoldSecret(s) {
			return slog.String(a.Key, String(s))
		}
	case slog.KindGroup:
		g := a.Value.Group()
		red := make([]slog.Attr, len(g))
		for i, x := range g {
			red[i] = Attr(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(red...)}
	case slog.KindAny:
		// Errors, Stringers, structs: look at them as printed. Values without a
		// secret keep their type (and their JSON form).
		if s := fmt.Sprint(a.Value.Any()); mayHoldSecret(s) {
			return slog.String(a.Key, String(s))
		}
	}
	return a
}

var (
	pemPrivateKey = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)`)
	swarmToken    = regexp.MustCompile(`SWMTKN-[0-9A-Za-z-]+`)
	// fingerprint is a public key's fingerprint, as "ssh-ed25519 SHA256:..." or
	// alone: not a secret, and what an operator needs to audit host keys.
	fingerprint = regexp.MustCompile(`^(?:[a-z0-9@.-]+ )?(?:SHA256:[A-Za-z0-9+/]{43}|MD5(?::[0-9a-f]{2}){16})$`)
)

func mayHoldSecret(s string) bool {
	return strings.Contains(s, "PRIVATE KEY-----") || strings.Contains(s, "SWMTKN-")
}

// String masks PEM private key blocks (a block cut short is masked to the end) and
// swarm join tokens in s.
func String(s string) string {
	if !mayHoldSecret(s) {
		return s
	}
	s = pemPrivateKey.ReplaceAllString(s, "[REDACTED PRIVATE KEY]")
	return swarmToken.ReplaceAllString(s, "SWMTKN-"+Mask)
}

// SecretKey reports whether an attribute key names a secret: split into words
// (at punctuation and camelCase), case-insensitively, it contains password, passwd,
// passphrase, secret, token, credential, apikey or privatekey, or the word "key"
// (api_key, tls.key, sshKey, key) other than a public or host key. Attr keeps a
// value under such a key when it is only a key fingerprint (SHA256:... or MD5:...,
// optionally after the key type).
func SecretKey(key string) bool {
	words := splitWords(key)
	joined := strings.Join(words, "")
	for _, s := range []string{"password", "passwd", "passphrase", "secret", "token", "credential", "apikey", "privatekey"} {
		if strings.Contains(joined, s) {
			return true
		}
	}
	for i, w := range words {
		if w == "key" && (i == 0 || (words[i-1] != "public" && words[i-1] != "host")) {
			return true
		}
	}
	return false
}

// splitWords lowercases key and splits it at non-alphanumerics and lower-to-upper
// case changes: "TLS.clientKey_file" is tls, client, key, file.
func splitWords(key string) []string {
	var words []string
	var cur []rune
	prevLower := false
	flush := func() {
		if len(cur) > 0 {
			words = append(words, string(cur))
			cur = cur[:0]
		}
	}
	for _, r := range key {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
			prevLower = false
			continue
		case unicode.IsUpper(r) && prevLower:
			flush()
		}
		prevLower = unicode.IsLower(r) || unicode.IsDigit(r)
		cur = append(cur, unicode.ToLower(r))
	}
	flush()
	return words
}
