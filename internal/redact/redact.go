// Package redact masks secrets in log records: a slog.Handler wrapper for the process
// logger, which the Temporal SDK's and the embedded server's logs also go through.
//
// It masks the value of any attribute whose key looks secret (see SecretKey), and,
// inside every string it logs (the message, string values, errors and other values
// as printed), the secrets String finds: PEM private keys (whole or the tail of one),
// swarm join tokens, password=... and the like, Authorization and Cookie headers,
// passwords in URLs, and base64 gossip and codec keys.
package redact

import (
	"context"
	"encoding/base64"
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
	pemPrivateKey = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|$)`)
	// pemTail is the end of a private key block whose BEGIN line is cut off (the
	// last 4 KiB of a command's output): the base64 lines before the END line, the
	// first of them possibly cut too, back to the start of the text or the first line
	// that is not base64.
	pemTail    = regexp.MustCompile(`(?m)(?:^[A-Za-z0-9+/=]*\r?\n)*-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----`)
	swarmToken = regexp.MustCompile(`SWMTKN-[0-9A-Za-z-]+`)
	// assignment is NAME=VALUE where NAME names a secret (password, DB_PASSWORD,
	// --passphrase, api_key, client_secret, token, ...), or NAME: VALUE where NAME
	// is one that prose does not use before a colon (password, api_key,
	// client_secret, auth_token; not "token" or "secret" alone). VALUE is quoted or
	// runs to the next space, quote, comma, semicolon or &.
	assignment = regexp.MustCompile(`(?i)(\b[a-z0-9_.-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|access[_-]?key)["']?\s*=\s*|` +
		`\b(?:[a-z0-9_.-]*(?:password|passwd|passphrase|api[_-]?key|access[_-]?key)|[a-z0-9.-]+[_-](?:secret|token))["']?\s*:\s*)` +
		`("[^"\r\n]*"|'[^'\r\n]*'|[^\s"'&,;]+)`)
	// flagValue is a secret given as a separate argument: --password VALUE.
	flagValue = regexp.MustCompile(`(?i)(\s--?(?:password|passwd|passphrase|secret|token|api-?key)\s+)([^\s-][^\s]*)`)
	// header is an Authorization or Cookie header (or a cookie setting) with its
	// value: the credentials run to the end of the line or a quote.
	header = regexp.MustCompile(`(?i)(\b(?:proxy-)?authorization|\b(?:set-)?cookie)(["']?\s*[:=]\s*["']?)(?:(basic|bearer|digest|token|negotiate)\s+)?([^"'\r\n]+)`)
	// digest is Digest authorization, whose quoted parameters run to the end of the line.
	digest = regexp.MustCompile(`(?i)(\b(?:proxy-)?authorization["']?\s*[:=]\s*["']?digest\s+)[^\r\n]+`)
	// dsnPassword is the password in a URL's user information: scheme://user:PASS@host.
	dsnPassword = regexp.MustCompile(`(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)([^/\s@]+)(@)`)
	// base64Run is a candidate key: a run of base64 characters as long as a
	// 16-byte or 32-byte key's text, the surroundings checked by base64Key.
	base64Run = regexp.MustCompile(`[A-Za-z0-9+/_-]{22,44}={0,2}`)
	// keyWord on a line makes a 16- or 32-byte base64 value on it a secret: Consul's
	// gossip key ("encrypt"), the codec's keyring (CLUSTERFLOW_CODEC_KEYS), and the like.
	keyWord = regexp.MustCompile(`(?i)key|encrypt|gossip|secret|token|passw|credential`)
	// keyringLine is a line of a codec keyring: an ID and a key, nothing else.
	keyringLine = regexp.MustCompile(`^\s*[A-Za-z0-9._-]{1,64}\s+$`)
	// mayHold is a quick test that a string holds something String masks.
	mayHold = regexp.MustCompile(`(?i)private key|swmtkn-|passw|passphrase|secret|token|api[_-]?key|access[_-]?key|authorization|cookie|://[^/\s@]*@|[A-Za-z0-9+/_-]{22}`)
	// fingerprint is a public key's fingerprint, as "ssh-ed25519 SHA256:..." or
	// alone: not a secret, and what an operator needs to audit host keys.
	fingerprint = regexp.MustCompile(`^(?:[a-z0-9@.-]+ )?(?:SHA256:[A-Za-z0-9+/]{43}|MD5(?::[0-9a-f]{2}){16})$`)
)

func mayHoldSecret(s string) bool { return mayHold.MatchString(s) }

// String masks in s: PEM private key blocks (a block cut short is masked to the end;
// one whose BEGIN line was cut off, from the start of its base64 lines), Docker swarm
// join tokens, values assigned to secret-like names (password=..., api_key: ...,
// --token ...), Authorization and Cookie headers, passwords in URLs
// (postgres://user:PASS@host), and base64 values the size of a 16- or 32-byte key
// (gossip and codec keys) on a line that mentions a key or a secret, on a line of a
// keyring ("ID KEY"), or on a line of their own.
func String(s string) string {
	if !mayHoldSecret(s) {
		return s
	}
	s = pemPrivateKey.ReplaceAllString(s, "[REDACTED PRIVATE KEY]")
	s = pemTail.ReplaceAllString(s, "[REDACTED PRIVATE KEY]")
	s = swarmToken.ReplaceAllString(s, "SWMTKN-"+Mask)
	s = digest.ReplaceAllString(s, "${1}"+Mask)
	s = header.ReplaceAllStringFunc(s, func(m string) string {
		g := header.FindStringSubmatch(m)
		scheme := ""
		if g[3] != "" {
			scheme = g[3] + " "
		}
		return g[1] + g[2] + scheme + Mask
	})
	s = assignment.ReplaceAllString(s, "${1}"+Mask)
	s = flagValue.ReplaceAllString(s, "${1}"+Mask)
	s = dsnPassword.ReplaceAllString(s, "${1}"+Mask+"${3}")
	return maskBase64Keys(s)
}

// maskBase64Keys masks the base64 values in s that decode to 16 or 32 bytes where
// String says so. A key fingerprint (SHA256:...) is kept.
func maskBase64Keys(s string) string {
	var out strings.Builder
	last := 0
	for _, m := range base64Run.FindAllStringIndex(s, -1) {
		start, end := m[0], m[1]
		if start > 0 && isBase64Char(s[start-1]) || end < len(s) && isBase64Char(s[end]) {
			continue // part of a longer run: a public key, a hash, a token
		}
		if !keyLength(s[start:end]) || strings.HasSuffix(s[:start], "SHA256:") {
			continue
		}
		lineStart := strings.LastIndexByte(s[:start], '\n') + 1
		lineEnd := len(s)
		if i := strings.IndexByte(s[end:], '\n'); i >= 0 {
			lineEnd = end + i
		}
		before, after := s[lineStart:start], strings.TrimSpace(s[end:lineEnd])
		alone := strings.TrimSpace(before) == "" && after == ""
		if !alone && !keyWord.MatchString(s[lineStart:lineEnd]) && !(keyringLine.MatchString(before) && after == "") {
			continue
		}
		out.WriteString(s[last:start])
		out.WriteString(Mask)
		last = end
	}
	if last == 0 {
		return s
	}
	out.WriteString(s[last:])
	return out.String()
}

// isBase64Char reports whether c may continue a base64 run (padding only ends one).
func isBase64Char(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '_' || c == '-'
}

// keyLength reports whether s is base64 (standard or URL-safe, padded or not) of
// exactly 16 or 32 bytes.
func keyLength(s string) bool {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return len(b) == 16 || len(b) == 32
		}
	}
	return false
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
