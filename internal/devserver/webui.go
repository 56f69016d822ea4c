package devserver

import (
	"context"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/temporalio/ui-server/v2/server/api"
	"github.com/temporalio/ui-server/v2/server/auth"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	"github.com/temporalio/ui-server/v2/server/cors"
	"github.com/temporalio/ui-server/v2/server/csrf"
	"github.com/temporalio/ui-server/v2/server/headers"
	"github.com/temporalio/ui-server/v2/server/route"
	"github.com/temporalio/ui-server/v2/ui"

	"github.com/clusterflow/clusterflow/internal/httpguard"
)

// hostsAdvice ends the Web UI's refusal of a foreign Host.
const hostsAdvice = "if it is one of yours, add it with --ui-hosts (CLUSTERFLOW_UI_HOSTS, embedded.uiHosts)"

// webUI is the Temporal Web UI served from this process, behind a Host check.
//
// ui-server's own Server cannot take one: its echo instance is unexported and it opens
// its listener itself (and exits the process when the port is taken). So the UI is put
// together here from ui-server's exported routes and middleware, in the order its
// NewServer uses (recover, gzip, CORS, secure headers, the CSRF token cookie and
// check, then the health, API and UI routes), minus what the embedded UI does not use
// (request logs, a public path, OIDC, TLS), and served by an http.Server on a
// listener opened before the Temporal server starts.
//
// The CSRF cookie stays readable by script: the UI's JavaScript reads it from
// document.cookie and sends it back in X-CSRF-Token, and ui-server hard-codes
// HttpOnly false. It is SameSite=Strict. What keeps a foreign page from reading it (or
// from passing the CSRF check as "same-origin", which echo lets through without a
// token) is the Host check: a DNS rebinding page's requests carry its own name.
type webUI struct {
	srv    *http.Server
	cfg    *uiconfig.ConfigProviderWithRefresh
	served chan error
}

// startWebUI serves the UI described by cfg on ln, for requests whose Host hosts
// allows.
func startWebUI(ln net.Listener, cfg *uiconfig.Config, hosts httpguard.Hosts, logger *slog.Logger) (*webUI, error) {
	provider, err := uiconfig.NewConfigProviderWithRefresh(cfg)
	if err != nil {
		return nil, err
	}
	e, err := uiRoutes(provider, !cfg.CORS.CookieInsecure)
	if err != nil {
		provider.Close()
		return nil, err
	}
	w := &webUI{
		srv: &http.Server{
			Handler:           httpguard.Guard(hosts, hostsAdvice, e),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
		cfg:    provider,
		served: make(chan error, 1),
	}
	go func() { w.served <- w.srv.Serve(ln) }()
	return w, nil
}

// uiRoutes is ui-server's echo application for provider's config.
func uiRoutes(provider *uiconfig.ConfigProviderWithRefresh, cookieSecure bool) (*echo.Echo, error) {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Use(middleware.Recover())
	e.Use(middleware.Gzip())
	e.Use(cors.CORSMiddleware(cors.CORSConfig{
		AllowHeaders: []string{echo.HeaderOrigin, echo.HeaderContentType, echo.HeaderAccept,
			echo.HeaderXCSRFToken, echo.HeaderAuthorization, auth.AuthorizationExtrasHeader, "Caller-Type"},
		AllowCredentials: true,
		ConfigProvider:   provider,
	}))
	e.Use(middleware.Secure())
	e.Use(csrf.EnsureTokenCookie(cookieSecure))
	e.Use(middleware.CSRFWithConfig(csrf.MiddlewareConfig(provider, cookieSecure)))

	route.SetHealthRoute(e)
	// The headers the UI forwards to the frontend, as ui-server's NewServer sets them.
	forward := []api.Middleware{headers.WithForwardHeaders([]string{auth.AuthorizationExtrasHeader, "Caller-Type"})}
	if err := route.SetAPIRoutes(e, provider, forward); err != nil {
		return nil, err
	}
	assets, err := ui.Assets()
	if err != nil {
		return nil, err
	}
	if assets, err = fs.Sub(assets, "local"); err != nil {
		return nil, err
	}
	if err := route.SetUIRoutes(e, "", assets, provider); err != nil {
		return nil, err
	}
	route.SetRenderRoute(e, "/")
	return e, nil
}

// stop shuts the UI down, letting requests in flight finish for a few seconds.
func (w *webUI) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = w.srv.Shutdown(ctx)
	<-w.served // http.ErrServerClosed, or why serving stopped earlier
	w.cfg.Close()
}
