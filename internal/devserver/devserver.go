// Package devserver runs an embedded Temporal server and the Temporal Web UI inside
// the clusterflow process: by default on SQLite in a file (one history shard, static
// membership, one process), or on PostgreSQL, where every server process on one
// database joins one Temporal cluster (ringpop membership over their own ports, the
// schema created and migrated with the server's own SQL tooling), optionally with
// mTLS on the frontend and between the servers.
//
// It is the only package in the module that imports go.temporal.io/server: the server
// and UI weigh about 150 MB and take minutes to compile, so only the worker and starter
// binaries link it. Workflows, activities and their tests must never import it.
package devserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/clusterflow/clusterflow/internal/codec"
	cfconfig "github.com/clusterflow/clusterflow/internal/config"
	"github.com/clusterflow/clusterflow/internal/httpguard"
)

// clusterName is the name of the single-cluster setup the embedded server runs.
const clusterName = "active"

// Options configure the embedded server.
type Options struct {
	// IP the frontend and UI bind to. Default 127.0.0.1: the frontend has no auth.
	IP string
	// GRPCPort is the frontend port (default 7233). UIPort 0 turns the Web UI off.
	GRPCPort, UIPort int
	// HTTPPort is the frontend's HTTP API port; 0 (the default) leaves the HTTP API
	// off. When on, it answers the Host names the UI does, and refuses requests a
	// browser sends from a page that is not the Web UI (see browserGuard).
	HTTPPort int
	// Hosts are the names, besides localhost, loopback addresses and IP, that the
	// Web UI and the HTTP API answer to (see internal/httpguard).
	Hosts []string
	// DBFile is the SQLite file. Empty means in memory (tests only).
	DBFile string
	// Namespace created on every start (idempotent). Default "default".
	Namespace string
	// Retention of closed runs; applied when the namespace is first created.
	Retention time.Duration
	// SearchAttributes registered on the namespace.
	SearchAttributes map[string]enumspb.IndexedValueType
	// CodecEndpoint, when set, is given to the Web UI to decode payloads.
	CodecEndpoint string
	// Codec, when set with the Web UI on, is served on CodecAddress (host:port) for
	// as long as the server runs, and given to the Web UI as its codec endpoint in
	// place of CodecEndpoint. The UI passes it no access token. When CodecAddress
	// is taken, a warning is logged and the UI shows payloads encoded.
	Codec        http.Handler
	CodecAddress string
	// Postgres, when set, keeps persistence and visibility in PostgreSQL instead of
	// DBFile, and makes this server one member of the cluster of every server on
	// that database.
	Postgres *cfconfig.Postgres
	// HistoryShards is the shard count of a new database; a database that has one
	// already is started only with that count (0 accepts it, whatever it is).
	HistoryShards int
	// ClusterPorts is the first of cfconfig.ClusterPortCount ports the internal
	// services and membership of a PostgreSQL server listen on; 0 picks free ones.
	ClusterPorts int
	// BroadcastAddress is the IP the cluster's other servers dial this one on;
	// empty means IP, or the first non-loopback address when IP is unspecified.
	BroadcastAddress string
	// TLS, when set, is mTLS on the frontend and between servers (see TLSFiles).
	TLS *TLSFiles
	// Logger receives the server's logs (filtered to LogLevel).
	Logger   *slog.Logger
	LogLevel slog.Level
}

// Server is a running embedded Temporal server and, optionally, its Web UI.
type Server struct {
	srv       temporal.Server
	ui        *webUI
	level     *slog.LevelVar
	hostPort  string
	uiURL     string
	httpURL   string
	codecURL  string
	stopCodec func()
	tls       *TLSFiles
	shards    int
	members   string
}

// HistoryShards is the database's history shard count.
func (s *Server) HistoryShards() int { return s.shards }

// Membership says where this server gossips with the cluster's others, or "" for the
// SQLite server, which has no others.
func (s *Server) Membership() string { return s.members }

// HostPort is the frontend address clients dial.
func (s *Server) HostPort() string { return s.hostPort }

// UIURL is the Web UI's base URL, or "" when the UI is off.
func (s *Server) UIURL() string { return s.uiURL }

// HTTPURL is the frontend HTTP API's base URL, or "" when it is off.
func (s *Server) HTTPURL() string { return s.httpURL }

// CodecURL is the codec endpoint's base URL, or "" when this server serves none.
func (s *Server) CodecURL() string { return s.codecURL }

// Start brings the server up and returns once the frontend accepts connections.
func Start(o Options) (*Server, error) {
	if o.IP == "" {
		o.IP = "127.0.0.1"
	}
	if o.GRPCPort == 0 {
		o.GRPCPort = 7233
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.TLS != nil {
		if err := o.TLS.check(); err != nil {
			return nil, err
		}
	}
	hostPort := net.JoinHostPort(o.IP, strconv.Itoa(o.GRPCPort))
	hosts := httpguard.NewHosts(o.IP, o.Hosts)
	for _, p := range []int{o.GRPCPort, o.HTTPPort} {
		if p == 0 {
			continue
		}
		if err := portFree(o.IP, p); err != nil {
			return nil, err
		}
	}
	// The UI's listener is opened first and kept, so that its port cannot be taken
	// while the server starts.
	var uiListener net.Listener
	if o.UIPort != 0 {
		addr := net.JoinHostPort(o.IP, strconv.Itoa(o.UIPort))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("embedded temporal: web UI: %s is in use (another clusterflow or Temporal server?): %w", addr, err)
		}
		uiListener = l
	}
	s, err := start(o, hostPort, hosts)
	if err != nil {
		if uiListener != nil {
			uiListener.Close()
		}
		return nil, err
	}
	if uiListener != nil {
		if err := s.startUI(o, uiListener, hosts); err != nil {
			uiListener.Close()
			s.Stop()
			return nil, fmt.Errorf("embedded temporal: web UI: %w", err)
		}
	}
	return s, nil
}

// start brings the Temporal server up (without the UI).
func start(o Options, hostPort string, hosts httpguard.Hosts) (*Server, error) {
	level := &slog.LevelVar{}
	level.Set(o.LogLevel)
	logger := newLogger(o.Logger, level)
	var store, visibility *config.SQL
	var err error
	unlock := func() {}
	if o.Postgres != nil {
		var release func()
		store, visibility, release, err = preparePostgres(o, logger)
		if err == nil {
			// Held through the shard count check and until the server is built
			// (see preparePostgres), so that this server sees what a racing one
			// wrote.
			unlock = sync.OnceFunc(release)
			defer unlock()
		}
	} else {
		store, err = prepareDB(o)
		visibility = store
	}
	if err != nil {
		return nil, err
	}
	shards, err := historyShards(store, o, logger)
	if err != nil {
		return nil, err
	}
	cfg, staticHosts, err := serverConfig(o, store, visibility, hostPort, shards)
	if err != nil {
		return nil, err
	}
	authz, err := authorization.GetAuthorizerFromConfig(&cfg.Global.Authorization)
	if err != nil {
		return nil, fmt.Errorf("embedded temporal: authorizer: %w", err)
	}
	claims, err := authorization.GetClaimMapperFromConfig(&cfg.Global.Authorization, logger)
	if err != nil {
		return nil, fmt.Errorf("embedded temporal: claim mapper: %w", err)
	}
	dc := dynamicconfig.StaticClient{
		// New search attributes are usable at once rather than after a cache refresh.
		dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): true,
		// The UI lists runs through visibility; the default rate is low for it.
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key():                 8192,
	}
	if o.HTTPPort != 0 {
		// The server's default answers any Host: a DNS rebinding page's too.
		dc[dynamicconfig.FrontendHTTPAllowedHosts.Key()] = hosts.Patterns()
	}
	if o.TLS != nil && staticHosts == nil {
		// Membership gossip under the internode certificates too.
		dc[dynamicconfig.EnableRingpopTLS.Key()] = true
	}
	opts := []temporal.ServerOption{
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices), // the worker service runs schedules
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authz),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claims }),
		temporal.WithChainedFrontendGrpcInterceptors(browserGuard(uiOrigins(o, hosts))),
		temporal.WithDynamicConfigClient(dc),
	}
	if staticHosts != nil {
		opts = append(opts, temporal.WithStaticHosts(staticHosts))
	}
	srv, err := temporal.NewServer(opts...)
	unlock()
	if err != nil {
		return nil, fmt.Errorf("embedded temporal: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("embedded temporal: start: %w", err)
	}
	s := &Server{srv: srv, level: level, hostPort: hostPort, tls: o.TLS, shards: shards}
	if staticHosts == nil {
		s.members = membershipNote(cfg)
	}
	if o.Postgres != nil {
		// SQLite's namespace was written into the file before the start; on
		// PostgreSQL it is registered through the API, as Temporal documents.
		if err := s.ensureNamespace(o); err != nil {
			s.Stop()
			return nil, err
		}
	}
	if o.HTTPPort != 0 {
		s.httpURL = "http://" + dialAddress(&net.TCPAddr{IP: net.ParseIP(o.IP), Port: o.HTTPPort})
		if net.ParseIP(o.IP) == nil { // a host name
			s.httpURL = "http://" + net.JoinHostPort(o.IP, strconv.Itoa(o.HTTPPort))
		}
	}
	return s, nil
}

// startUI serves the Web UI on ln (and, with the codec on, the codec endpoint it
// decodes payloads through).
func (s *Server) startUI(o Options, ln net.Listener, hosts httpguard.Hosts) error {
	if o.Codec != nil && o.CodecAddress != "" {
		if err := s.serveCodec(o); err != nil {
			o.Logger.Warn("codec endpoint not started: the Web UI will show payloads encrypted; set --codec-address to a free host:port", "error", err)
		} else {
			o.CodecEndpoint = s.codecURL
		}
	}
	ui, err := startWebUI(ln, &uiconfig.Config{
		Host:                o.IP,
		Port:                o.UIPort,
		TemporalGRPCAddress: s.localFrontend(),
		TLS:                 s.uiTLS(),
		EnableUI:            true,
		DefaultNamespace:    o.Namespace,
		HideLogs:            true,
		DisableNewsFetch:    true, // no outside traffic
		CORS:                uiconfig.CORS{CookieInsecure: true},
		Codec:               uiconfig.Codec{Endpoint: o.CodecEndpoint, PassAccessToken: false},
		// StartWorkflowDisabled stays false: operators start playbooks from the UI.
	}, hosts, o.Logger)
	if err != nil {
		return err
	}
	s.ui = ui
	s.uiURL = "http://" + dialAddress(ln.Addr().(*net.TCPAddr))
	return nil
}

// uiOrigins are the origins a browser shows the Web UI under: the only pages whose
// requests (which the UI forwards with their Origin) the frontend serves.
func uiOrigins(o Options, hosts httpguard.Hosts) []string {
	if o.UIPort == 0 {
		return nil
	}
	var origins []string
	for _, n := range hosts.Names() {
		origins = append(origins, "http://"+net.JoinHostPort(n, strconv.Itoa(o.UIPort)))
	}
	return origins
}

// gatewayPrefix is what grpc-gateway (github.com/grpc-ecosystem/grpc-gateway/v2,
// runtime.MetadataPrefix) puts before the standard HTTP headers it forwards as gRPC
// metadata.
const gatewayPrefix = "grpcgateway-"

// browserGuard refuses frontend calls that a browser made on behalf of a page other
// than the Web UI. Calls through the HTTP API (and through the UI, which forwards
// the browser's headers) carry the browser's Origin and Content-Type as
// "grpcgateway-" metadata; gRPC clients send neither. A page elsewhere can send a
// cross-origin POST without asking first (a "simple request": text/plain or form
// data, which the Temporal API reads as JSON all the same), so: a call with an
// Origin is served only when that is the Web UI's (the UI itself sends its JSON as
// text/plain), and one without (curl; a browser too old to send Origin) only with a
// JSON body.
func browserGuard(uiOrigins []string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if origins := md.Get(gatewayPrefix + "origin"); len(origins) > 0 {
			for _, origin := range origins {
				if !slices.Contains(uiOrigins, origin) {
					return nil, status.Errorf(codes.PermissionDenied, "requests from web pages other than the Web UI are refused (Origin %q)", origin)
				}
			}
			return handler(ctx, req)
		}
		for _, ct := range md.Get(gatewayPrefix + "content-type") {
			if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
				return nil, status.Errorf(codes.PermissionDenied, "request bodies must be application/json, not %q", ct)
			}
		}
		return handler(ctx, req)
	}
}

// Stop shuts the UI and the server down. The server logs shutdown noise
// (cancelled polls) at warning level, so it is quietened first.
func (s *Server) Stop() {
	s.level.Set(slog.LevelError + 4)
	if s.ui != nil {
		s.ui.stop()
	}
	if s.stopCodec != nil {
		s.stopCodec()
	}
	s.srv.Stop()
}

// serveCodec serves o.Codec on o.CodecAddress.
func (s *Server) serveCodec(o Options) error {
	bound, stop, err := codec.Serve(o.CodecAddress, o.Codec, o.Logger)
	if err != nil {
		return err
	}
	addr, err := net.ResolveTCPAddr("tcp", bound)
	if err != nil {
		stop()
		return err
	}
	s.codecURL, s.stopCodec = "http://"+dialAddress(addr), stop
	return nil
}

// dialAddress is where a browser on this machine reaches a listener on addr.
func dialAddress(addr *net.TCPAddr) string {
	if addr.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(addr.Port))
	}
	return addr.String()
}

func prepareDB(o Options) (*config.SQL, error) {
	sqlCfg := &config.SQL{PluginName: sqliteplugin.PluginName, ConnectAttributes: map[string]string{}}
	if o.DBFile == "" {
		sqlCfg.DatabaseName = fmt.Sprintf("clusterflow-%d-%d", os.Getpid(), time.Now().UnixNano())
		sqlCfg.ConnectAttributes["mode"] = "memory"
		sqlCfg.ConnectAttributes["cache"] = "shared"
	} else {
		sqlCfg.DatabaseName = o.DBFile
		sqlCfg.ConnectAttributes["mode"] = "rwc"
		sqlCfg.ConnectAttributes["journal_mode"] = "wal"
		sqlCfg.ConnectAttributes["synchronous"] = "2" // FULL: a crash loses no acknowledged write
		if err := privateState(o.DBFile); err != nil {
			return nil, err
		}
		_, err := os.Stat(o.DBFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// Created empty and private first: SQLite would create it with the umask's
			// mode (0644), and gives its -wal and -shm files the database's mode.
			f, err := os.OpenFile(o.DBFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return nil, fmt.Errorf("embedded temporal: database: %w", err)
			}
			f.Close()
			// The schema is created once and never migrated: the server version is pinned.
			if err := sqliteschema.SetupSchema(sqlCfg); err != nil {
				os.Remove(o.DBFile) // so that the next start tries again
				return nil, fmt.Errorf("embedded temporal: create schema in %s: %w", o.DBFile, err)
			}
		case err != nil:
			return nil, fmt.Errorf("embedded temporal: database %s: %w", o.DBFile, err)
		}
	}
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, o.Namespace, false, o.SearchAttributes)
	if err != nil {
		return nil, fmt.Errorf("embedded temporal: namespace %s: %w", o.Namespace, err)
	}
	if o.Retention > 0 {
		ns.Detail.Config.Retention = durationpb.New(o.Retention)
	}
	// A no-op when the namespace exists; search attributes added later are
	// registered through the operator service by the caller.
	if err := sqliteschema.CreateNamespaces(sqlCfg, ns); err != nil {
		return nil, fmt.Errorf("embedded temporal: namespace %s: %w", o.Namespace, err)
	}
	return sqlCfg, nil
}

// privateState makes the state directory holding dbFile 0700 and the database files
// in it 0600, whoever created them: the directory may predate this process (the lab
// and other commands create it too) with the umask's 0755, and the database holds
// every run's history.
func privateState(dbFile string) error {
	dir := filepath.Dir(dbFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("embedded temporal: state directory: %w", err)
	}
	for _, p := range []string{dir, dbFile, dbFile + "-wal", dbFile + "-shm"} {
		info, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("embedded temporal: state directory: %w", err)
		}
		perm := info.Mode().Perm()
		if perm&0o077 == 0 {
			continue
		}
		want := os.FileMode(0o600)
		if info.IsDir() {
			want = 0o700
		}
		if err := os.Chmod(p, want); err != nil {
			return fmt.Errorf("embedded temporal: %s is open to other users (mode %04o) and could not be made private: %w; "+
				"chmod %o it or use another --state-dir", p, perm, err, want)
		}
	}
	return nil
}

// serverConfig is the server's configuration. The static hosts it returns are nil for a
// server on PostgreSQL, which finds its peers through ringpop instead.
func serverConfig(o Options, store, visibility *config.SQL, hostPort string, shards int) (*config.Config, map[primitives.ServiceName]static.Hosts, error) {
	clustered := o.Postgres != nil
	cfg := &config.Config{}
	cfg.Persistence = config.Persistence{
		DefaultStore:     "sqlite",
		VisibilityStore:  "sqlite", // the same file
		NumHistoryShards: int32(shards),
		DataStores:       map[string]config.DataStore{"sqlite": {SQL: store}},
	}
	if clustered {
		cfg.Persistence.DefaultStore, cfg.Persistence.VisibilityStore = "postgres", "postgres-visibility"
		cfg.Persistence.DataStores = map[string]config.DataStore{"postgres": {SQL: store}, "postgres-visibility": {SQL: visibility}}
	}
	broadcast := o.IP
	if clustered {
		var err error
		if broadcast, err = broadcastAddress(o); err != nil {
			return nil, nil, err
		}
	}
	cfg.Global.Membership = config.Membership{MaxJoinDuration: 30 * time.Second, BroadcastAddress: broadcast}
	if o.TLS != nil {
		cfg.Global.TLS = o.TLS.rootTLS()
	}
	rpcAddress := hostPort
	httpAddress := ""
	if clustered {
		rpcAddress = net.JoinHostPort(broadcast, strconv.Itoa(o.GRPCPort))
	}
	if o.HTTPPort != 0 {
		httpAddress = net.JoinHostPort(broadcast, strconv.Itoa(o.HTTPPort))
	}
	cfg.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{clusterName: {
			Enabled:                true,
			InitialFailoverVersion: 1,
			RPCAddress:             rpcAddress,
			HTTPAddress:            httpAddress,
			ClusterID:              "6c1f3d2e-8a4b-4c5d-9e6f-0a1b2c3d4e5f", // fixed: one embedded cluster per database
		}},
	}
	cfg.DCRedirectionPolicy.Policy = "noop"
	ports, err := servicePorts(o)
	if err != nil {
		return nil, nil, err
	}
	cfg.Services = map[string]config.Service{}
	hosts := map[primitives.ServiceName]static.Hosts{}
	for _, name := range services {
		var svc config.Service
		svc.RPC.BindOnIP = o.IP
		svc.RPC.GRPCPort = ports[name].grpc
		if clustered {
			svc.RPC.MembershipPort = ports[name].membership
		}
		if name == primitives.FrontendService {
			svc.RPC.HTTPPort = o.HTTPPort // 0: no HTTP API
		}
		cfg.Services[string(name)] = svc
		hosts[name] = static.SingleLocalHost(net.JoinHostPort(o.IP, strconv.Itoa(svc.RPC.GRPCPort)))
	}
	cfg.Archival.History.State = "disabled"
	cfg.Archival.Visibility.State = "disabled"
	cfg.NamespaceDefaults.Archival.History.State = "disabled"
	cfg.NamespaceDefaults.Archival.Visibility.State = "disabled"
	if clustered {
		// Empty: the internal worker reaches the cluster's frontends through
		// membership (with the frontend's TLS settings), so it works on while this
		// process's own frontend is the one that is down.
		return cfg, nil, nil
	}
	cfg.PublicClient.HostPort = hostPort
	return cfg, hosts, nil
}

func portFree(ip string, port int) error {
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("embedded temporal: %s is in use (another clusterflow or Temporal server?): %w", addr, err)
	}
	return l.Close()
}

func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("embedded temporal: no free port on %s: %w", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
