// Package devserver runs an embedded Temporal server (SQLite in a file, one history
// shard, static membership) and the Temporal Web UI inside the clusterflow process.
//
// It is the only package in the module that imports go.temporal.io/server: the server
// and UI weigh about 150 MB and take minutes to compile, so only the worker and starter
// binaries link it. Workflows, activities and their tests must never import it.
package devserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uiopts "github.com/temporalio/ui-server/v2/server/server_options"
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
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/clusterflow/clusterflow/internal/codec"
)

// clusterName is the name of the single-cluster setup the embedded server runs.
const clusterName = "active"

// Options configure the embedded server.
type Options struct {
	// IP the frontend and UI bind to. Default 127.0.0.1: the frontend has no auth.
	IP string
	// GRPCPort is the frontend port (default 7233). UIPort 0 turns the Web UI off.
	GRPCPort, UIPort int
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
	// Logger receives the server's logs (filtered to LogLevel).
	Logger   *slog.Logger
	LogLevel slog.Level
}

// Server is a running embedded Temporal server and, optionally, its Web UI.
type Server struct {
	srv       temporal.Server
	ui        *uiserver.Server
	level     *slog.LevelVar
	hostPort  string
	uiURL     string
	codecURL  string
	stopCodec func()
}

// HostPort is the frontend address clients dial.
func (s *Server) HostPort() string { return s.hostPort }

// UIURL is the Web UI's base URL, or "" when the UI is off.
func (s *Server) UIURL() string { return s.uiURL }

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
	hostPort := net.JoinHostPort(o.IP, strconv.Itoa(o.GRPCPort))
	// The UI server exits the whole process when its port is taken, so check both
	// ports before starting anything.
	for _, p := range []int{o.GRPCPort, o.UIPort} {
		if p == 0 {
			continue
		}
		if err := portFree(o.IP, p); err != nil {
			return nil, err
		}
	}

	sqlCfg, err := prepareDB(o)
	if err != nil {
		return nil, err
	}
	cfg, hosts, err := serverConfig(o, sqlCfg, hostPort)
	if err != nil {
		return nil, err
	}

	level := &slog.LevelVar{}
	level.Set(o.LogLevel)
	logger := newLogger(o.Logger, level)
	authz, err := authorization.GetAuthorizerFromConfig(&cfg.Global.Authorization)
	if err != nil {
		return nil, fmt.Errorf("embedded temporal: authorizer: %w", err)
	}
	claims, err := authorization.GetClaimMapperFromConfig(&cfg.Global.Authorization, logger)
	if err != nil {
		return nil, fmt.Errorf("embedded temporal: claim mapper: %w", err)
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices), // the worker service runs schedules
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authz),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claims }),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
			// New search attributes are usable at once rather than after a cache refresh.
			dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): true,
			// The UI lists runs through visibility; the default rate is low for it.
			dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
			dynamicconfig.HistoryCacheHostLevelMaxSize.Key():                 8192,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("embedded temporal: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("embedded temporal: start: %w", err)
	}
	s := &Server{srv: srv, level: level, hostPort: hostPort}
	if o.UIPort != 0 && o.Codec != nil && o.CodecAddress != "" {
		if err := s.serveCodec(o); err != nil {
			o.Logger.Warn("codec endpoint not started: the Web UI will show payloads encrypted; set --codec-address to a free host:port", "error", err)
		} else {
			o.CodecEndpoint = s.codecURL
		}
	}
	if o.UIPort != 0 {
		s.ui = uiserver.NewServer(uiopts.WithConfigProvider(&uiconfig.Config{
			Host:                o.IP,
			Port:                o.UIPort,
			TemporalGRPCAddress: hostPort,
			EnableUI:            true,
			DefaultNamespace:    o.Namespace,
			HideLogs:            true,
			DisableNewsFetch:    true, // no outside traffic
			CORS:                uiconfig.CORS{CookieInsecure: true},
			Codec:               uiconfig.Codec{Endpoint: o.CodecEndpoint, PassAccessToken: false},
			// StartWorkflowDisabled stays false: operators start playbooks from the UI.
		}))
		uiErr := make(chan error, 1)
		go func() { uiErr <- s.ui.Start() }()
		s.uiURL = "http://" + net.JoinHostPort(o.IP, strconv.Itoa(o.UIPort))
		if err := waitListening(net.JoinHostPort(o.IP, strconv.Itoa(o.UIPort)), uiErr, 10*time.Second); err != nil {
			s.Stop()
			return nil, fmt.Errorf("embedded temporal: web UI: %w", err)
		}
	}
	return s, nil
}

// Stop shuts the UI and the server down. The server logs shutdown noise
// (cancelled polls) at warning level, so it is quietened first.
func (s *Server) Stop() {
	s.level.Set(slog.LevelError + 4)
	if s.ui != nil {
		s.ui.Stop()
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
		_, err := os.Stat(o.DBFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := os.MkdirAll(filepath.Dir(o.DBFile), 0o700); err != nil {
				return nil, fmt.Errorf("embedded temporal: state directory: %w", err)
			}
			// The schema is created once and never migrated: the server version is pinned.
			if err := sqliteschema.SetupSchema(sqlCfg); err != nil {
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

func serverConfig(o Options, sqlCfg *config.SQL, hostPort string) (*config.Config, map[primitives.ServiceName]static.Hosts, error) {
	cfg := &config.Config{}
	cfg.Global.Membership = config.Membership{MaxJoinDuration: 30 * time.Second, BroadcastAddress: o.IP}
	cfg.Persistence = config.Persistence{
		DefaultStore:     "sqlite",
		VisibilityStore:  "sqlite",
		NumHistoryShards: 1,
		DataStores:       map[string]config.DataStore{"sqlite": {SQL: sqlCfg}},
	}
	httpPort, err := freePort(o.IP)
	if err != nil {
		return nil, nil, err
	}
	cfg.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{clusterName: {
			Enabled:                true,
			InitialFailoverVersion: 1,
			RPCAddress:             hostPort,
			HTTPAddress:            net.JoinHostPort(o.IP, strconv.Itoa(httpPort)),
			ClusterID:              "6c1f3d2e-8a4b-4c5d-9e6f-0a1b2c3d4e5f", // fixed: one embedded cluster per database
		}},
	}
	cfg.DCRedirectionPolicy.Policy = "noop"
	cfg.Services = map[string]config.Service{}
	hosts := map[primitives.ServiceName]static.Hosts{}
	for _, name := range []primitives.ServiceName{primitives.FrontendService, primitives.HistoryService, primitives.MatchingService, primitives.WorkerService} {
		var svc config.Service
		svc.RPC.BindOnIP = o.IP
		if name == primitives.FrontendService {
			svc.RPC.GRPCPort = o.GRPCPort
			svc.RPC.HTTPPort = httpPort
		} else {
			p, err := freePort(o.IP)
			if err != nil {
				return nil, nil, err
			}
			svc.RPC.GRPCPort = p
		}
		cfg.Services[string(name)] = svc
		hosts[name] = static.SingleLocalHost(net.JoinHostPort(o.IP, strconv.Itoa(svc.RPC.GRPCPort)))
	}
	cfg.Archival.History.State = "disabled"
	cfg.Archival.Visibility.State = "disabled"
	cfg.NamespaceDefaults.Archival.History.State = "disabled"
	cfg.NamespaceDefaults.Archival.Visibility.State = "disabled"
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

func waitListening(addr string, failed <-chan error, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		select {
		case err := <-failed:
			return err
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not start listening within %s", addr, limit)
		}
	}
}
