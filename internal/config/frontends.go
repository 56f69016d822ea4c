package config

import (
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// frontendScheme names the gRPC resolver that hands a client the frontend addresses
// of a comma-separated --address.
const frontendScheme = "clusterflow-frontends"

// Frontends splits a Temporal address into its frontends: "a:7233,b:7233" is two.
// One address (including a gRPC target such as dns:///temporal.internal:7233) is
// returned as it is.
func Frontends(address string) ([]string, error) {
	if !strings.Contains(address, ",") {
		return []string{address}, nil
	}
	var out []string
	for _, a := range strings.Split(address, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if strings.Contains(a, "://") {
			return nil, fmt.Errorf("temporal address %q: a list takes host:port items; give a gRPC target (%s) on its own", address, a)
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("temporal address %q: item %q: want host:port", address, a)
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("temporal address %q names no frontend", address)
	}
	return out, nil
}

// dialFrontends returns the SDK host-port and dial options that reach every address
// in list: for several, a resolver of this connection's own that gives gRPC all of
// them. The SDK's connection balances round-robin over the addresses a resolver
// gives (its default service config), so calls go to the frontends that answer and a
// dead one is left out until it comes back. Each address is verified under its own
// host name unless a TLS server name is set.
//
// This is the SDK's documented way to give a client several hosts. The others need
// something outside clusterflow: dns:/// needs a DNS name with a record per
// frontend (all on one port), and a load balancer is one more thing to run and keep
// up (both work, as a single --address).
func dialFrontends(list []string) (string, []grpc.DialOption) {
	if len(list) == 1 {
		return list[0], nil
	}
	r := manual.NewBuilderWithScheme(frontendScheme)
	addrs := make([]resolver.Address, len(list))
	for i, a := range list {
		host, _, _ := net.SplitHostPort(a)
		addrs[i] = resolver.Address{Addr: a, ServerName: host}
	}
	r.InitialState(resolver.State{Addresses: addrs})
	// The target's path only names the first frontend in error messages.
	return frontendScheme + ":///" + list[0], []grpc.DialOption{grpc.WithResolvers(r)}
}
