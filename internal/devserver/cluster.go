package devserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/metrics"
	"go.temporal.io/server/common/persistence"
	"go.temporal.io/server/common/persistence/serialization"
	persistencesql "go.temporal.io/server/common/persistence/sql"
	"go.temporal.io/server/common/persistence/sql/sqlplugin"
	"go.temporal.io/server/common/primitives"
	"go.temporal.io/server/common/resolver"

	cfconfig "github.com/clusterflow/clusterflow/internal/config"
)

// services are the Temporal services every embedded server process runs, in the
// order their ports are taken from ClusterPorts (see servicePorts).
var services = []primitives.ServiceName{primitives.FrontendService, primitives.HistoryService, primitives.MatchingService, primitives.WorkerService}

// ports are where one service listens: its gRPC port and, in a cluster, the port
// its ringpop membership gossips on.
type ports struct{ grpc, membership int }

// servicePorts assigns the services their ports: the frontend's gRPC port is
// GRPCPort; the others come from ClusterPorts in the order the config package
// documents (history, matching and worker gRPC, then the membership ports of
// frontend, history, matching and worker), or are free ports picked now. Fixed
// ports are checked free first, so that a taken one is named in the error rather
// than failing deep inside the server.
func servicePorts(o Options) (map[primitives.ServiceName]ports, error) {
	out := map[primitives.ServiceName]ports{}
	next := o.ClusterPorts
	take := func() (int, error) {
		switch {
		case o.ClusterPorts == 0 && o.Postgres != nil:
			return freeMembershipPort(o.IP)
		case o.ClusterPorts == 0:
			return freePort(o.IP)
		}
		p := next
		next++
		if err := portFree(o.IP, p); err != nil {
			return 0, fmt.Errorf("%w (--cluster-ports %d takes %d ports from there)", err, o.ClusterPorts, cfconfig.ClusterPortCount)
		}
		return p, nil
	}
	for _, name := range services {
		p := ports{grpc: o.GRPCPort}
		if name != primitives.FrontendService {
			var err error
			if p.grpc, err = take(); err != nil {
				return nil, err
			}
		}
		out[name] = p
	}
	if o.Postgres == nil {
		return out, nil // static membership: no membership ports
	}
	for _, name := range services {
		p := out[name]
		var err error
		if p.membership, err = take(); err != nil {
			return nil, err
		}
		out[name] = p
	}
	return out, nil
}

// broadcastAddress is the IP the cluster's other servers reach this one on.
func broadcastAddress(o Options) (string, error) {
	if o.BroadcastAddress != "" {
		return o.BroadcastAddress, nil
	}
	ip := net.ParseIP(o.IP)
	if ip == nil {
		return "", fmt.Errorf("embedded temporal: bind address %q is not an IP; set --broadcast-address to the IP the other servers reach this one on", o.IP)
	}
	if !ip.IsUnspecified() {
		return o.IP, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("embedded temporal: listing this machine's addresses for the broadcast address: %w; set --broadcast-address", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String(), nil
		}
	}
	return "", errors.New("embedded temporal: bound to all addresses and this machine has no non-loopback IPv4 address to tell the other servers; set --broadcast-address")
}

// historyShards is the shard count to start with: the count stored in the database
// when it has one, which must then match any count asked for, else the count asked
// for, or the default for a new database. Temporal itself replaces a configured
// count that differs from the stored one by the stored one with a warning; here the
// operator who asked for another count is told that it cannot change.
func historyShards(store *config.SQL, o Options, logger log.Logger) (int, error) {
	stored, err := storedShards(store, logger)
	if err != nil {
		return 0, err
	}
	switch {
	case stored != 0 && o.HistoryShards != 0 && int(stored) != o.HistoryShards:
		return 0, fmt.Errorf("embedded temporal: the database was created with %d history shards and --history-shards asks for %d: "+
			"the count never changes after the first start (Temporal maps every run to a shard by it); "+
			"drop --history-shards (CLUSTERFLOW_HISTORY_SHARDS, embedded.historyShards) or give %d, or start a new database", stored, o.HistoryShards, stored)
	case stored != 0:
		return int(stored), nil
	case o.HistoryShards != 0:
		return o.HistoryShards, nil
	case o.Postgres != nil:
		return cfconfig.DefaultPGShards, nil
	}
	return 1, nil
}

// storedShards reads the history shard count from the database's cluster metadata,
// or 0 when no server has started on it yet.
func storedShards(store *config.SQL, logger log.Logger) (int32, error) {
	db, err := persistencesql.NewSQLDB(sqlplugin.DbKindMain, store, resolver.NewNoopResolver(), logger, metrics.NoopMetricsHandler)
	if err != nil {
		return 0, fmt.Errorf("embedded temporal: database: %w", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	row, err := db.GetClusterMetadata(ctx, &sqlplugin.ClusterMetadataFilter{ClusterName: clusterName})
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("embedded temporal: reading the cluster metadata: %w", err)
	}
	md, err := serialization.NewSerializer().DeserializeClusterMetadata(persistence.NewDataBlob(row.Data, row.DataEncoding))
	if err != nil {
		return 0, fmt.Errorf("embedded temporal: reading the cluster metadata: %w", err)
	}
	return md.GetHistoryShardCount(), nil
}

// membershipNote names the broadcast address and the services' membership ports.
func membershipNote(cfg *config.Config) string {
	var parts []string
	for _, name := range services {
		parts = append(parts, fmt.Sprintf("%s %d", name, cfg.Services[string(name)].RPC.MembershipPort))
	}
	return fmt.Sprintf("%s, ports %s", cfg.Global.Membership.BroadcastAddress, strings.Join(parts, ", "))
}

// freeMembershipPort is a free port below 32768. PostgreSQL's cluster_membership
// table keeps ports as smallint (the server fails to join with "44309 is greater
// than maximum value for int2"), and Linux hands out ephemeral ports from 32768 up,
// so a port from the kernel would not do; one below is also safe from being taken
// by an outgoing connection between this check and the server's bind.
func freeMembershipPort(ip string) (int, error) {
	for range 200 {
		p := 10000 + rand.IntN(32768-10000)
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("embedded temporal: no free port between 10000 and 32767 on %s; set --cluster-ports", ip)
}
