package remote

import (
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/clusterflow/clusterflow/internal/rules"
)

// wrapperScript runs every command; see wrapper.sh.
//
//go:embed wrapper.sh
var wrapperFile string

var wrapperScript = ScriptBody(wrapperFile)

// ScriptBody is a shell script file without its header: the first line (#!) and
// the comment lines and blank lines that follow it. The header documents the
// script in the repository; what runs on the host, and shows in its process list,
// is the body.
func ScriptBody(text string) string {
	rest := text
	for rest != "" {
		line, after, _ := strings.Cut(rest, "\n")
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			break
		}
		rest = after
	}
	return strings.TrimRight(rest, "\n")
}

// IsEnvName reports whether s is a portable environment variable name.
func IsEnvName(s string) bool { return rules.EnvName(s) }

// commandLine builds the shell command line that sshd hands to the login shell. Every
// argv element, env value and directory is single-quoted; nothing is pasted raw.
// The login shell must be POSIX-like (sh, bash, dash, ksh, zsh).
func (c Cmd) commandLine() (string, error) {
	inner, err := c.directLine()
	if err != nil {
		return "", err
	}
	return "exec /bin/sh -c " + Quote(wrapperScript) + " clusterflow " + Quote(inner), nil
}

// directLine is the command line without the wrapper: the command gets the
// session's standard input, and nothing kills it when the session ends early (a
// caller that streams data to it, see receive.sh, relies on the end of its input
// instead).
func (c Cmd) directLine() (string, error) {
	if len(c.Argv) == 0 {
		return "", errors.New("command is empty")
	}
	for _, a := range c.Argv {
		if strings.ContainsRune(a, 0) {
			return "", fmt.Errorf("command argument %q contains a NUL byte", a)
		}
	}
	var inner strings.Builder
	if c.Dir != "" {
		inner.WriteString("cd " + Quote(c.Dir) + " && ")
	}
	inner.WriteString("exec ")
	if c.Sudo {
		// -n: never prompt; a sudo that needs a password fails at once instead.
		inner.WriteString("sudo -n -- ")
	}
	if len(c.Env) > 0 {
		// After sudo, so that sudo's environment reset does not drop the variables.
		inner.WriteString("env ")
		keys := make([]string, 0, len(c.Env))
		for k := range c.Env {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if !rules.EnvName(k) {
				return "", fmt.Errorf("env name %q is not a valid variable name", k)
			}
			v := c.Env[k]
			if strings.ContainsRune(v, 0) {
				return "", fmt.Errorf("env %s contains a NUL byte", k)
			}
			inner.WriteString(Quote(k+"="+v) + " ")
		}
	}
	inner.WriteString(Join(c.Argv))
	return inner.String(), nil
}

// Quote quotes s for a POSIX shell. Inside single quotes nothing is special but
// the single quote itself, which becomes: end quote, escaped quote, new quote.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes and joins an argv: a shell reads it back as the same words.
func Join(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}
