// Package httpguard holds the checks clusterflow's own HTTP listeners (the embedded
// Web UI, the frontend's HTTP API when it is on, the profiler) make against requests a
// browser may send on behalf of a page the operator happens to visit.
//
// DNS rebinding is the attack they stop: a page on attacker.example points its own
// name at 127.0.0.1 and then talks to the Web UI as if the UI were its own origin
// (same-origin requests pass the UI's CSRF check, and the page may read its cookie).
// The browser still sends "Host: attacker.example", so a listener that answers only
// the names it serves is out of reach. An IP address in Host is never the result of
// rebinding, but it is checked too: only loopback addresses and the addresses this
// process was told it serves pass.
package httpguard

import (
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// Hosts is the set of host names (without ports) a listener answers to. Loopback
// addresses and "localhost" are always in it.
type Hosts struct {
	names []string // lowercase, sorted, without loopback names
}

// hostName is what a configured name may look like: a DNS name or an IP address,
// without port, wildcard or trailing dot.
var hostName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// CheckName refuses a configured host name that is not a plain DNS name or IP
// address: a wildcard or pattern would let rebinding through.
func CheckName(name string) error {
	n := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(name, "["), "]"))
	if net.ParseIP(n) != nil {
		return nil
	}
	if strings.ContainsAny(name, "*?") {
		return fmt.Errorf("host %q: wildcards are not accepted (DNS rebinding would match them); list each name", name)
	}
	if !hostName.MatchString(n) {
		return fmt.Errorf("host %q: want a DNS name or an IP address, without port", name)
	}
	return nil
}

// NewHosts returns loopback, bindIP (unless it is empty or the unspecified address)
// and extra. Extra names must pass CheckName; those that do not are left out.
func NewHosts(bindIP string, extra []string) Hosts {
	var h Hosts
	add := func(n string) {
		n = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(n, "["), "]"))
		if ip := net.ParseIP(n); ip != nil {
			if ip.IsLoopback() || ip.IsUnspecified() {
				return
			}
			n = ip.String()
		} else if n == "localhost" || CheckName(n) != nil {
			return
		}
		if !slices.Contains(h.names, n) {
			h.names = append(h.names, n)
		}
	}
	add(bindIP)
	for _, n := range extra {
		add(n)
	}
	slices.Sort(h.names)
	return h
}

// Names lists every name h allows, loopback ones first.
func (h Hosts) Names() []string {
	return append([]string{"localhost", "127.0.0.1", "::1"}, h.names...)
}

// NonLoopback lists the names h allows besides the loopback ones.
func (h Hosts) NonLoopback() []string { return slices.Clone(h.names) }

// Allow reports whether a request's Host header (name or address, with or without
// port) names this listener.
func (h Hosts) Allow(host string) bool {
	name := host
	if n, _, err := net.SplitHostPort(host); err == nil {
		name = n
	}
	name = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(name, "["), "]"))
	if ip := net.ParseIP(name); ip != nil {
		return ip.IsLoopback() || slices.Contains(h.names, ip.String())
	}
	return name == "localhost" || slices.Contains(h.names, name)
}

// Patterns are h's names as Temporal's frontend.httpAllowedHosts setting takes them,
// each followed by ":*" (any port). The server joins the patterns into one regular
// expression that anchors only the first at the start, so each pattern must be safe
// to find anywhere in a Host header: "NAME:*" is found only in a Host whose name ends
// with NAME: for 127.0.0.1 none (browsers read a name ending in a number as an IPv4
// address), for localhost only *.localhost (which browsers keep on the machine), for a
// configured name only names in its parent's DNS zone. A bare NAME would match "NAME.attacker.example" and is not listed, so the
// API is reached with a port in the Host (as browsers and curl send it unless the
// port is 80). Loopback addresses other than 127.0.0.1 and ::1 are not listed either.
func (h Hosts) Patterns() []string {
	var out []string
	for _, n := range h.Names() {
		if strings.Contains(n, ":") {
			n = "[" + n + "]"
		}
		out = append(out, n+":*")
	}
	return out
}

// Guard serves next only for requests whose Host h allows, and answers others 403
// with the names it allows and advice (say, which setting adds a name).
func Guard(h Hosts, advice string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.Allow(r.Host) {
			http.Error(w, fmt.Sprintf("host %q is not a name this server answers to (%s); %s",
				r.Host, strings.Join(h.Names(), ", "), advice), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Loopback reports whether addr (host:port) is a loopback address or "localhost":
// what a listener that must not be reached from other machines may bind to.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
