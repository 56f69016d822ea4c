// Command worker runs clusterflow workers: processes that poll the clusterflow task
// queue and run playbook workflows and their activities. Workers keep no state of
// their own; run as many as you like against one Temporal cluster.
//
// With no Temporal address configured, the worker starts the embedded Temporal
// server (SQLite in the state directory, Web UI on 127.0.0.1:8233) in the same
// process, unless one already listens on the embedded port. `worker server` runs the
// embedded server alone. `worker codec-server` serves the payload codec endpoint for
// a Web UI that runs elsewhere.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/clusterflow/clusterflow/internal/app"
	"github.com/clusterflow/clusterflow/internal/codec"
	"github.com/clusterflow/clusterflow/internal/config"
	"github.com/clusterflow/clusterflow/internal/devserver"
	"github.com/clusterflow/clusterflow/internal/metrics"
	"github.com/clusterflow/clusterflow/workflows"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:   "worker",
		Short: "Run a clusterflow worker (and the embedded Temporal server when no address is set)",
		Example: `  # Local: embedded Temporal + Web UI on 127.0.0.1:8233, state in ./.clusterflow
  worker

  # Against an existing Temporal cluster
  worker --address temporal.example.internal:7233 --namespace ops

  # Prometheus metrics on another address (default 127.0.0.1:9464; empty turns them off)
  worker --metrics-address 0.0.0.0:9464

  # Temporal Cloud style: TLS with an API key kept in a file
  TEMPORAL_ADDRESS=ns.acct.tmprl.cloud:7233 TEMPORAL_NAMESPACE=ns.acct worker --api-key-file ~/.config/clusterflow/apikey

  # Encrypt payloads (every worker and starter needs the same keys)
  worker --codec-key-file ~/.config/clusterflow/codec-keys`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Flags(), environ)
			if err != nil {
				return err
			}
			return runWorker(cmd.Context(), cfg, environ, stdout, stderr)
		},
	}
	config.AddFlags(root.PersistentFlags())
	root.AddCommand(&cobra.Command{
		Use:   "server",
		Short: "Run only the embedded Temporal server and its Web UI",
		Example: `  worker server                 # 127.0.0.1:7233, UI on 127.0.0.1:8233
  worker server --bind 0.0.0.0  # inside a container, for other containers`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Flags(), environ)
			if err != nil {
				return err
			}
			return runServer(cmd.Context(), cfg, environ, stdout, stderr)
		},
	})
	root.AddCommand(&cobra.Command{
		Use:   "codec-server",
		Short: "Serve the payload codec endpoint for a Web UI that runs elsewhere",
		Long: `Serve POST /decode and /encode with the codec keys, so that a Temporal Web UI
(or the temporal CLI) shows clusterflow's encrypted payloads decoded. The browser
calls the endpoint, so it only needs to be reachable from the operator's machine:
keep the loopback default. Only the Web UI origins named by --codec-origins may use
it from a browser (default: the embedded UI's, http://127.0.0.1:8233).`,
		Example: `  # Keys in a file; the cluster's Web UI at https://temporal.example.internal
  worker codec-server --codec-key-file ~/.config/clusterflow/codec-keys \
    --codec-origins https://temporal.example.internal
  # then in that Web UI: Codec Server settings, endpoint http://127.0.0.1:8234

  # Another port; the temporal CLI decodes through it too
  worker codec-server --codec-address 127.0.0.1:9234
  temporal workflow show -w playbook/hello --codec-endpoint http://127.0.0.1:9234`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Flags(), environ)
			if err != nil {
				return err
			}
			return runCodecServer(cmd.Context(), cfg, stdout, stderr)
		},
	})
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

func runWorker(ctx context.Context, cfg config.Config, environ []string, stdout, stderr io.Writer) error {
	logger := app.NewLogger(cfg, stderr)
	var opts []app.ConnectOption
	if cfg.MetricsAddress != "" {
		m, err := metrics.New(logger)
		if err != nil {
			return err
		}
		// A busy address (say, a second worker on this machine with the default)
		// costs the metrics, not the worker.
		if addr, stopMetrics, err := m.Serve(cfg.MetricsAddress, logger); err != nil {
			logger.Warn("metrics endpoint not started; set --metrics-address to a free host:port", "error", err)
		} else {
			defer stopMetrics()
			fmt.Fprintf(stdout, "metrics: http://%s/metrics\n", addr)
			opts = append(opts, app.WithMetrics(m.Handler))
		}
	}
	stopPprof, err := servePprof(environ, stdout)
	if err != nil {
		return err
	}
	defer stopPprof()
	t, err := app.Connect(ctx, cfg, logger, opts...)
	if err != nil {
		return err
	}
	defer t.Close()
	stop, err := app.StartWorker(t, cfg, logger)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(stdout, "worker polling task queue %q on %s (namespace %s, %s server)\n", workflows.TaskQueue, t.HostPort, t.Namespace, t.Mode)
	if t.UIURL != "" {
		fmt.Fprintf(stdout, "Web UI: %s\n", t.UIURL)
	}
	printEndpoints(stdout, cfg, t.Server)
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping worker")
	return nil
}

func runServer(ctx context.Context, cfg config.Config, environ []string, stdout, stderr io.Writer) error {
	if !cfg.Temporal.Embedded() {
		return fmt.Errorf("worker server runs the embedded server; unset the Temporal address (%s)", cfg.Temporal.Address)
	}
	logger := app.NewLogger(cfg, stderr)
	stopPprof, err := servePprof(environ, stdout)
	if err != nil {
		return err
	}
	defer stopPprof()
	srv, err := app.StartServer(cfg, logger)
	if err != nil {
		return err
	}
	defer srv.Stop()
	fmt.Fprintf(stdout, "Temporal server on %s, database %s, %d history shards\n", srv.HostPort(), cfg.Database(), srv.HistoryShards())
	if m := srv.Membership(); m != "" {
		fmt.Fprintf(stdout, "cluster membership: %s\n", m)
	}
	if cfg.Temporal.TLSCert != "" {
		fmt.Fprintln(stdout, "mTLS: client certificates signed by", cfg.Temporal.TLSCA, "required")
	}
	if srv.UIURL() != "" {
		fmt.Fprintf(stdout, "Web UI: %s\n", srv.UIURL())
	}
	printEndpoints(stdout, cfg, srv)
	<-ctx.Done()
	return nil
}

// printEndpoints names the embedded server's HTTP API when this process serves it,
// says whether payloads are encrypted, and where the embedded Web UI decodes them.
func printEndpoints(stdout io.Writer, cfg config.Config, srv *devserver.Server) {
	if srv != nil && srv.HTTPURL() != "" {
		fmt.Fprintf(stdout, "HTTP API: %s\n", srv.HTTPURL())
	}
	if !cfg.Codec.On() {
		return
	}
	fmt.Fprintf(stdout, "payloads encrypted with key %s\n", cfg.Codec.Keys.Current())
	if srv != nil && srv.CodecURL() != "" {
		fmt.Fprintf(stdout, "codec endpoint: %s\n", srv.CodecURL())
	}
}

func runCodecServer(ctx context.Context, cfg config.Config, stdout, stderr io.Writer) error {
	if !cfg.Codec.On() {
		return fmt.Errorf("the codec is off: give its keys with --codec-key-file, CLUSTERFLOW_CODEC_KEY_FILE or %s", codec.KeysEnv)
	}
	if cfg.Codec.Address == "" {
		return errors.New("no codec address: set --codec-address to a host:port")
	}
	logger := app.NewLogger(cfg, stderr)
	origins := cfg.CodecOrigins()
	addr, stop, err := codec.Serve(cfg.Codec.Address, codec.Handler(codec.New(cfg.Codec.Keys), origins, cfg.Codec.Address), logger)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(stdout, "codec endpoint: http://%s (keys %s; current %s)\n", addr, strings.Join(cfg.Codec.Keys.IDs(), ", "), cfg.Codec.Keys.Current())
	if len(origins) == 0 {
		fmt.Fprintln(stdout, "no Web UI origins allowed: browsers are refused; set --codec-origins")
	} else {
		fmt.Fprintf(stdout, "for Web UI origins: %s\n", strings.Join(origins, " "))
	}
	<-ctx.Done()
	return nil
}
