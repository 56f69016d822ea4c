package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/clusterflow/clusterflow/internal/httpguard"
)

// pprofEnv names the address where the worker serves Go's profiler
// (net/http/pprof under /debug/pprof/), for performance work such as the benchmark
// in bench/: `go tool pprof http://ADDR/debug/pprof/profile?seconds=10`. Unset: off.
// It exposes the process's internals (memory, command line), so it listens on
// loopback only, and answers only requests addressed to a loopback name (a DNS
// rebinding page's carry its own).
const pprofEnv = "CLUSTERFLOW_PPROF_ADDRESS"

// servePprof starts the profiler endpoint when pprofEnv is set in environ, and
// returns a function that stops it.
func servePprof(environ []string, stdout io.Writer) (stop func(), err error) {
	addr := ""
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, pprofEnv+"="); ok {
			addr = v
		}
	}
	if addr == "" {
		return func() {}, nil
	}
	if !httpguard.Loopback(addr) {
		return nil, fmt.Errorf("%s=%s: the profiler listens on loopback only (e.g. 127.0.0.1:6060); reach it from elsewhere through ssh -L", pprofEnv, addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s=%s: %w", pprofEnv, addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: httpguard.Guard(httpguard.NewHosts("", nil), "use localhost or a loopback address", mux), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	fmt.Fprintf(stdout, "pprof: http://%s/debug/pprof/\n", l.Addr())
	return func() { _ = srv.Close() }, nil
}
