// Package metrics serves a worker's Prometheus endpoint. The Temporal SDK's metrics
// (temporal_*) and clusterflow's own (clusterflow_*, emitted through the Temporal
// metrics handler by workflows and activities) go to an OpenTelemetry MeterProvider
// whose Prometheus exporter writes to a registry of its own, not the global default:
// the embedded Temporal server may live in the same process.
//
// Metric labels carry step kinds, outcomes, states and workflow and activity types
// only, never host names, commands, file contents or credentials, so nothing secret
// reaches /metrics; and the handler the worker uses is Bounded, so that type names
// anyone may put on the task queue cannot add series without limit.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
)

// DurationBuckets are the histogram bounds, in seconds, of every timer (the SDK's
// latencies and clusterflow_step_duration_seconds): from 5ms to an hour.
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// Metrics is a MeterProvider exporting to its own Prometheus registry, and the
// Temporal metrics handler over it.
type Metrics struct {
	Registry *prometheus.Registry
	Provider *sdkmetric.MeterProvider
	// Handler goes into client.Options.MetricsHandler; workflows and activities
	// reach it with workflow.GetMetricsHandler and activity.GetMetricsHandler.
	Handler client.MetricsHandler
}

// New returns a Metrics whose registry also holds the Go runtime and process
// collectors. logger receives instrument errors (nil: slog.Default()).
func New(logger *slog.Logger) (*Metrics, error) {
	if logger == nil {
		logger = slog.Default()
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(exp),
		sdkmetric.WithView(sdkmetric.NewView(
			sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram, Unit: "s"},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: DurationBuckets}},
		)),
	)
	h := temporalotel.NewMetricsHandler(temporalotel.MetricsHandlerOptions{
		Meter:                provider.Meter("clusterflow"),
		UseMonotonicCounters: true, // counters export as Prometheus counters (_total)
		OnError: func(err error) {
			logger.Warn("metric instrument error", "error", err)
		},
	})
	return &Metrics{Registry: reg, Provider: provider, Handler: h}, nil
}

// HTTPHandler serves GET /metrics (Prometheus text format) and GET /healthz.
func (m *Metrics) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// Serve listens on addr (host:port; port 0 picks one) and serves HTTPHandler until
// stop is called. It returns the address it listens on.
func (m *Metrics) Serve(addr string, logger *slog.Logger) (bound string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("metrics endpoint: %w", err)
	}
	srv := &http.Server{Handler: m.HTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && logger != nil {
			logger.Error("metrics endpoint stopped", "error", err)
		}
	}()
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
		_ = m.Provider.Shutdown(ctx)
	}, nil
}
