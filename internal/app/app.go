// Package app wires a clusterflow process together: logging, the Temporal connection
// (an existing cluster, or the embedded server) and the in-process worker. The worker
// and starter binaries share it. It imports the embedded server, so only those
// binaries (and tests that need a real server) may import this package.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/codec"
	"github.com/clusterflow/clusterflow/internal/config"
	"github.com/clusterflow/clusterflow/internal/devserver"
	"github.com/clusterflow/clusterflow/internal/metrics"
	"github.com/clusterflow/clusterflow/internal/redact"
	"github.com/clusterflow/clusterflow/workflows"
)

// NewLogger returns the process logger configured by cfg. Secrets are masked in
// everything it writes (see internal/redact), including the SDK's and the embedded
// server's logs, which go through it.
func NewLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(redact.NewHandler(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(redact.NewHandler(slog.NewTextHandler(w, opts)))
}

// Temporal is a connection to a Temporal cluster, and the embedded server behind it
// when this process started one.
type Temporal struct {
	Client    client.Client
	Namespace string
	HostPort  string
	UIURL     string            // Web UI base URL when known, else ""
	Server    *devserver.Server // non-nil when this process hosts the server
	Mode      string            // "remote", "embedded" or "shared" (another process's embedded server)
	// Metrics receives the SDK's and clusterflow's metrics (client.MetricsNopHandler
	// unless Connect was given WithMetrics), their label values bounded (see
	// boundedMetrics).
	Metrics client.MetricsHandler
}

// ConnectOption changes how Connect sets up the client.
type ConnectOption func(*Temporal)

// WithMetrics sends the client's and its workers' metrics to h.
func WithMetrics(h client.MetricsHandler) ConnectOption {
	return func(t *Temporal) { t.Metrics = h }
}

// Close closes the client and stops the embedded server if this process runs it.
func (t *Temporal) Close() {
	if t.Client != nil {
		t.Client.Close()
	}
	if t.Server != nil {
		t.Server.Stop()
	}
}

// RunLink is the Web UI page of a run, or "" when the UI address is unknown.
func (t *Temporal) RunLink(workflowID, runID string) string {
	if t.UIURL == "" {
		return ""
	}
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s/%s/history",
		t.UIURL, url.PathEscape(t.Namespace), url.PathEscape(workflowID), url.PathEscape(runID))
}

// StartServer starts the embedded server from cfg. It fails when the port is taken.
// With TLS files configured it serves mTLS, and this process's own clients present
// the same certificate (see config.ClientOptions).
// With the codec on, the Web UI decodes payloads through a codec endpoint this
// process serves on cfg.Codec.Address.
func StartServer(cfg config.Config, logger *slog.Logger) (*devserver.Server, error) {
	o := devserver.Options{
		IP:               cfg.Temporal.BindIP,
		GRPCPort:         cfg.Temporal.GRPCPort,
		UIPort:           cfg.Temporal.UIPort,
		HTTPPort:         cfg.Temporal.HTTPPort,
		Hosts:            cfg.Temporal.UIHosts,
		DBFile:           cfg.DBFile(),
		Namespace:        cfg.Temporal.Namespace,
		Retention:        cfg.Temporal.Retention,
		SearchAttributes: workflows.SearchAttributes(),
		Postgres:         cfg.Temporal.Postgres,
		HistoryShards:    cfg.Temporal.HistoryShards,
		ClusterPorts:     cfg.Temporal.ClusterPorts,
		BroadcastAddress: cfg.Temporal.BroadcastAddress,
		Logger:           logger,
		LogLevel:         slog.LevelWarn,
	}
	if t := cfg.Temporal; t.TLSCert != "" {
		o.TLS = &devserver.TLSFiles{CertFile: t.TLSCert, KeyFile: t.TLSKey, CAFile: t.TLSCA, ServerName: t.TLSServerName}
	}
	if cfg.Codec.On() {
		o.Codec = codec.Handler(codec.New(cfg.Codec.Keys), cfg.CodecOrigins(), cfg.Codec.Address)
		o.CodecAddress = cfg.Codec.Address
	}
	return devserver.Start(o)
}

// Connect reaches the configured Temporal cluster. With no address configured it
// uses the embedded server: the one another clusterflow process already runs on the
// embedded port, or a new one in this process (with its Web UI), persisted in the
// state directory.
func Connect(ctx context.Context, cfg config.Config, logger *slog.Logger, options ...ConnectOption) (*Temporal, error) {
	t := &Temporal{Namespace: cfg.Temporal.Namespace, Mode: "remote", HostPort: cfg.Temporal.Address, Metrics: client.MetricsNopHandler}
	for _, o := range options {
		o(t)
	}
	t.Metrics = boundedMetrics(t.Metrics)
	if cfg.Temporal.Embedded() {
		t.HostPort = dialAddress(cfg.Temporal.BindIP, cfg.Temporal.GRPCPort)
		if cfg.Temporal.UIPort != 0 {
			t.UIURL = "http://" + dialAddress(cfg.Temporal.BindIP, cfg.Temporal.UIPort)
		}
		if listening(t.HostPort) {
			t.Mode = "shared"
		} else {
			srv, err := StartServer(cfg, logger)
			if err != nil {
				return nil, err
			}
			t.Server, t.Mode = srv, "embedded"
		}
	}
	opts, err := cfg.ClientOptions(t.HostPort)
	if err != nil {
		t.Close()
		return nil, err
	}
	opts.Logger = sdklog.NewStructuredLogger(logger)
	opts.MetricsHandler = t.Metrics
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		t.Close()
		if hint := tlsHint(t.HostPort, opts); hint != "" {
			return nil, fmt.Errorf("connecting to Temporal at %s (namespace %s): %w; %s", t.HostPort, t.Namespace, err, hint)
		}
		return nil, fmt.Errorf("connecting to Temporal at %s (namespace %s): %w", t.HostPort, t.Namespace, err)
	}
	t.Client = c
	if err := EnsureSearchAttributes(ctx, c, t.Namespace); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// EnsureSearchAttributes registers the search attributes clusterflow sets on its runs
// when the namespace lacks them. On a cluster where this identity may not register
// them, the error says how to do it by hand.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("listing search attributes of namespace %s: %w", namespace, err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	var names []string
	for name, typ := range workflows.SearchAttributes() {
		if _, ok := have.GetCustomAttributes()[name]; !ok {
			missing[name] = typ
			names = append(names, name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(names)
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: missing})
	if err != nil {
		return fmt.Errorf("namespace %s lacks clusterflow's search attributes (%s) and registering them failed: %w; "+
			"register them once with `temporal operator search-attribute create --namespace %s --name NAME --type Keyword` "+
			"(ClusterflowStepKinds is KeywordList)", namespace, strings.Join(names, ", "), err, namespace)
	}
	return nil
}

// StartWorker starts a worker for clusterflow's task queue in this process. The
// returned stop function stops it and closes its SSH connections.
func StartWorker(t *Temporal, cfg config.Config, logger *slog.Logger) (stop func(), err error) {
	files, err := cfg.FilePolicy()
	if err != nil {
		return nil, err
	}
	content, ssh, write := files.Dirs()
	logger.Info("worker file policy: what playbooks may name on this machine",
		"read", strings.Join(content, ","), "sshKeys", strings.Join(ssh, ","), "write", strings.Join(write, ","))
	pool := remote.NewPool(remote.PoolOptions{Logger: logger, Metrics: t.Metrics, Files: files})
	w := worker.New(t.Client, workflows.TaskQueue, workerOptions())
	workflows.Register(w)
	activities.Register(w, pool, cfg.PlaybookDir, files)
	if err := w.Start(); err != nil {
		pool.Close()
		return nil, fmt.Errorf("starting worker on task queue %s: %w", workflows.TaskQueue, err)
	}
	return func() {
		w.Stop()
		pool.Close()
	}, nil
}

// workerOptions are the worker's settings; each non-default one says why (the
// figures are from bench/, see docs/BENCHMARKS.md).
func workerOptions() worker.Options {
	return worker.Options{
		WorkerStopTimeout: 10 * time.Second,
		Interceptors:      []interceptor.WorkerInterceptor{metrics.RetryInterceptor()},
		// A step fans out to up to `parallel` host activities at once. With the
		// SDK's 2 activity pollers, each poll round trip hands out one task, and at
		// 100 hosts half the activities waited over 120 ms just to be picked up; 16
		// long polls cost the server next to nothing.
		MaxConcurrentActivityTaskPollers: 16,
		// Heartbeats reach the server at least every second (the SDK's default is
		// 80% of the heartbeat timeout), so a short heartbeat timeout (a dead
		// worker's attempt is retried within seconds) leaves room for a late one.
		MaxHeartbeatThrottleInterval: time.Second,
		// A workflow task waits this long for the worker that ran the workflow last
		// (and caches it) before any worker may take it (with a replay). The SDK's
		// 5 s is also how long a run whose worker was killed stays frozen, progress
		// query included, once its retried activity has finished elsewhere.
		StickyScheduleToStartTimeout: time.Second,
	}
}

// dialAddress is where a client on this machine reaches a server bound to ip:port.
func dialAddress(ip string, port int) string {
	if ip == "" || ip == "0.0.0.0" || ip == "::" {
		ip = "127.0.0.1"
	}
	return net.JoinHostPort(ip, strconv.Itoa(port))
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// ErrNoWorker reports a run that no worker will pick up.
var ErrNoWorker = errors.New("no worker polls the clusterflow task queue")
