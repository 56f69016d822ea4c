package httpguard

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestAllow(t *testing.T) {
	h := NewHosts("0.0.0.0", []string{"Ops.Example.internal", "10.1.2.3", "[fd00::5]", "bad*name"})
	for host, want := range map[string]bool{
		"127.0.0.1:8233": true, "127.0.0.1": true, "127.9.9.9:1": true, "[::1]:8233": true, "localhost:8233": true,
		"LOCALHOST:8233": true, "ops.example.internal:8233": true, "10.1.2.3:8233": true, "[fd00::5]:8233": true,
		"attacker.example:8233": false, "localhost.attacker.example:8233": false, "127.0.0.1.attacker.example": false,
		"0.0.0.0:8233": false, "10.1.2.4:8233": false, "": false, "bad*name:1": false, "example.internal:8233": false,
		"x.ops.example.internal:8233": false,
	} {
		if got := h.Allow(host); got != want {
			t.Errorf("Allow(%q) = %v, want %v", host, got, want)
		}
	}
	if got := strings.Join(h.Names(), " "); got != "localhost 127.0.0.1 ::1 10.1.2.3 fd00::5 ops.example.internal" {
		t.Errorf("Names() = %s", got)
	}
	if bound := NewHosts("192.168.7.1", nil); !bound.Allow("192.168.7.1:8233") || bound.Allow("192.168.7.2:8233") {
		t.Error("the bind address is served, no other")
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"ops.example.internal", "host-1", "10.0.0.1", "::1", "[fd00::1]"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"*", "*.example", "ops.example:8233", "a b", "-x", "x.", "", "ops/.."} {
		if err := CheckName(bad); err == nil {
			t.Errorf("CheckName(%q) accepted", bad)
		}
	}
}

// TestPatterns builds the regular expression as Temporal's server does (only the first
// alternative anchored at the start, only the last at the end) and checks that it
// still refuses the names a rebinding page would send.
func TestPatterns(t *testing.T) {
	var parts []string
	for _, p := range NewHosts("127.0.0.1", []string{"ops.example.internal"}).Patterns() {
		parts = append(parts, "("+strings.ReplaceAll(regexp.QuoteMeta(p), `\*`, ".*")+")")
	}
	re := regexp.MustCompile("^" + strings.Join(parts, "|") + "$")
	for host, want := range map[string]bool{
		"localhost:7243": true, "127.0.0.1:7243": true, "[::1]:7243": true, "ops.example.internal:7243": true,
		"attacker.example:7243": false, "localhost.attacker.example:7243": false, "127.0.0.1.attacker.example:7243": false,
		"ops.example.internal.attacker.example:7243": false,
	} {
		if got := re.MatchString(host); got != want {
			t.Errorf("%s: %q matched %v, want %v", re, host, got, want)
		}
	}
}

func TestGuard(t *testing.T) {
	h := Guard(NewHosts("127.0.0.1", nil), "add yours with --ui-hosts", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ui"))
	}))
	for host, want := range map[string]int{"127.0.0.1:8233": 200, "localhost:8233": 200, "rebind.attacker.example:8233": 403} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Host %s: %d, want %d", host, w.Code, want)
		}
		if want == 403 && !strings.Contains(w.Body.String(), "--ui-hosts") {
			t.Errorf("refusal does not say how to add a name: %s", w.Body)
		}
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:6060": true, "[::1]:6060": true, "localhost:6060": true, "127.0.0.2:1": true,
		"0.0.0.0:6060": false, ":6060": false, "[::]:6060": false, "10.0.0.1:6060": false, "example.internal:6060": false, "6060": false,
	} {
		if got := Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
