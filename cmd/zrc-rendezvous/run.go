package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/conf"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/tlsreload"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor/statefile"
)

// metricsMaxConnections caps the metrics listener's open connections.
const metricsMaxConnections = 64

func versionLine() string {
	return fmt.Sprintf("zrc-rendezvous %s (%s, %s)", version, commit, runtime.Version())
}

// run is the whole server: it returns when ctx ends (SIGTERM/SIGINT) and
// the shutdown is complete, or on a start-up error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	started := time.Now()
	res, err := conf.Parse(args, getenv)
	switch {
	case res != nil && res.Help:
		conf.Usage(stdout)
		return nil
	case res != nil && res.Version:
		fmt.Fprintln(stdout, versionLine())
		return nil
	case err != nil:
		return exitError{code: 2, err: err}
	case res.CheckConfig:
		stdout.Write(res.Config.TOML())
		return nil
	}
	cfg := res.Config

	level := zap.NewAtomicLevelAt(parseLevel(cfg.LogLevel))
	log := newLogger(stderr, cfg.LogFormat, level)
	defer log.Sync()
	log.Info("starting", zap.String("version", version), zap.String("commit", commit),
		zap.String("config_file", res.ConfigPath))

	step := func(name string, t0 time.Time) {
		log.Info("started "+name, zap.Duration("took", time.Since(t0)))
	}

	t0 := time.Now()
	policy := applyMemoryPolicy(cfg.RuntimeMemoryLimitMB, getenv)
	stopGovernor := policy.start()
	defer stopGovernor()
	log.Info("runtime memory policy", zap.String("policy", policy.describe()))

	var set *metrics.Set
	if cfg.MetricsEnabled {
		set = metrics.NewSet()
	}

	t0 = time.Now()
	var restored int
	restore, err := readState(cfg.StateFile, &restored)
	if err != nil {
		return err
	}
	sup := supervisor.New(supervisor.Options{
		MaxQueueLength:   cfg.MaxQueueLength,
		TTL:              cfg.MessageTTL(),
		IdleTimeout:      cfg.IdleMailboxTimeout(),
		EvictionInterval: cfg.EvictionInterval(),
		MaxMailboxes:     cfg.MaxMailboxes,
		MemoryLimit:      cfg.MemoryLimitBytes(),
		Logger:           log.Named("supervisor"),
		Metrics:          set,
		Restore:          restore,
	})
	log.Info("started supervisor", zap.Duration("took", time.Since(t0)), zap.Int("restored_messages", restored))

	t0 = time.Now()
	// Every request context derives from root; cancelling it with
	// ErrShuttingDown answers parked long-polls 503 at once (R9.4), which
	// http.Server.Shutdown alone would not do.
	root, cancelRoot := context.WithCancelCause(context.Background())
	defer cancelRoot(nil)
	gd, err := newGuard(cfg, log.Named("guard"))
	if err != nil {
		sup.Close()
		return exitError{code: 2, err: err}
	}
	certs, err := setupTLS(cfg, log.Named("tls"), set)
	if err != nil {
		sup.Close()
		return exitError{code: 2, err: err}
	}
	conns := httpapi.NewConnLimit(httpapi.ConnLimitOptions{
		Max: cfg.MaxConnections, Logger: log.Named("http"), Metrics: set,
	})
	defer conns.Close()
	handler := httpapi.New(httpapi.Deps{
		Mailboxes: sup,
		Guard:     gd,
		Conns:     conns,
		Logger:    log.Named("http"),
		Metrics:   set,
		Options: httpapi.Options{
			MaxMessageSize:  cfg.MaxMessageSize,
			LongPollDefault: cfg.LongPollDefault(),
			LongPollMax:     cfg.LongPollMax(),
			MemoryLimit:     cfg.MemoryLimitBytes(),
			MaxMailboxes:    cfg.MaxMailboxes,
			ServeMetrics:    cfg.MetricsEnabled && cfg.MetricsListen == "",
			Version:         version,
			Started:         started,
		},
	})
	// net/http's own error lines, failed TLS handshakes aggregated (R8.6).
	netLog := tlsreload.NewErrorLog(log.Named("net/http"), set, netHTTPLogInterval)
	defer netLog.Close()
	errLog := netLog.Logger()
	mainAddr := net.JoinHostPort(cfg.ListenAddr, strconv.Itoa(cfg.ListenPort))
	srv := httpapi.NewServer(handler, root, httpapi.ServerOptions{
		Addr: mainAddr, LongPollMax: cfg.LongPollMax(), ErrorLog: errLog,
		MaxMessageSize: cfg.MaxMessageSize,
	})
	ln, err := net.Listen("tcp", mainAddr)
	if err != nil {
		sup.Close()
		return fmt.Errorf("listen on %s (listen_addr, listen_port): %w", mainAddr, err)
	}
	tlsOn := certs != nil
	if tlsOn {
		// R8.1, R8.3, R8.5: HTTPS only, TLS 1.2 at least, the pair in
		// force through GetCertificate; ServeTLS negotiates HTTP/2
		// through ALPN.
		srv.TLSConfig = certs.ServerConfig()
	}
	// Every connection counts against max_connections from accept on;
	// past the cap it is refused under the TLS layer ServeTLS adds.
	ln = conns.Listener(ln, srv.TLSConfig)
	serveErr := make(chan error, 2)
	go func() {
		if tlsOn {
			serveErr <- srv.ServeTLS(ln, "", "")
		} else {
			serveErr <- srv.Serve(ln)
		}
	}()
	var metricsSrv *http.Server
	var metricsConns *httpapi.ConnLimit
	if set != nil && cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			srv.Close()
			sup.Close()
			return fmt.Errorf("listen on %s (metrics_listen): %w", cfg.MetricsListen, err)
		}
		// A scraper needs a connection or two; the listener has no
		// authentication, so its connections are capped like the main
		// listener's, lest it run the process out of file descriptors.
		metricsConns = httpapi.NewConnLimit(httpapi.ConnLimitOptions{
			Max: metricsMaxConnections, Logger: log.Named("metrics"), Cap: "the metrics listener's connection cap",
		})
		mln = metricsConns.Listener(mln, nil)
		metricsSrv = httpapi.NewServer(httpapi.MetricsHandler(set), root, httpapi.ServerOptions{
			Addr: cfg.MetricsListen, ErrorLog: errLog,
		})
		go func() { serveErr <- metricsSrv.Serve(mln) }()
		log.Info("serving metrics", zap.String("addr", mln.Addr().String()))
	}
	step("http server", t0)
	// The restored messages are in the actors and the server is listening:
	// only now is the state file consumed, so that a start that fails above
	// (a bad token file, a port in use) leaves it for the next one. It goes
	// before the ready line, on which whatever watches the process may act.
	if restore != nil {
		if err := os.Remove(cfg.StateFile); err != nil {
			log.Warn("could not remove the state file; its messages may be delivered again after the next restart",
				zap.String("state_file", cfg.StateFile), zap.Error(err))
		}
	}
	log.Info("ready", zap.String("addr", ln.Addr().String()), zap.Bool("tls", tlsOn),
		zap.Duration("startup", time.Since(started)))

	rl := &reloader{res: res, running: cfg, getenv: getenv, log: log.Named("reload"), hooks: []reloadHook{
		func(next conf.Config) (func(), error) {
			return func() { level.SetLevel(parseLevel(next.LogLevel)) }, nil
		},
		guardHook(gd, cfg, log.Named("guard")),
		tlsHook(certs),
	}}
	// Reload on a change of the config or token file too: Windows has no
	// SIGHUP (R5.6, R10.6).
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		watchFiles(watchCtx, fileWatchInterval, rl.watchedFiles, func() { rl.reload("file changed") })
	}()
	defer func() { stopWatch(); <-watchDone }()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case err := <-serveErr:
			if !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server failed", zap.Error(err))
				running = false
			}
		case <-hup:
			rl.reload("SIGHUP")
		}
	}

	// Shutdown: stop accepting, answer parked long-polls 503 at once,
	// drain the rest up to shutdown_timeout, then force-close (R9.1–R9.5).
	log.Info("shutting down", zap.Duration("drain_limit", cfg.ShutdownTimeout()),
		zap.Int64("waiting_long_polls", sup.Snapshot().Waiting))
	t0 = time.Now()
	cancelRoot(httpapi.ErrShuttingDown)
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), cfg.ShutdownTimeout())
	defer cancelDrain()
	if metricsSrv != nil {
		go metricsSrv.Shutdown(drainCtx)
	}
	if err := srv.Shutdown(drainCtx); err != nil {
		log.Warn("drain limit reached; closing remaining connections", zap.Error(err))
		srv.Close()
	}
	if metricsSrv != nil {
		metricsSrv.Close()
		metricsConns.Close()
	}
	// The aggregated lines still pending (refusals at the cap, failed
	// handshakes) come out now, before the totals.
	conns.Close()
	netLog.Close()
	log.Info("stopped http server", zap.Duration("took", time.Since(t0)))

	t0 = time.Now()
	snap := sup.Snapshot()
	left := sup.Close()
	log.Info("stopped supervisor", zap.Duration("took", time.Since(t0)))
	if cfg.StateFile != "" {
		n, err := statefile.Write(cfg.StateFile, left)
		if err != nil {
			log.Error("writing state file failed; queued messages are lost",
				zap.String("state_file", cfg.StateFile), zap.Error(err))
		} else {
			log.Info("wrote state file", zap.String("state_file", cfg.StateFile), zap.Int("messages", n))
		}
	}
	st := sup.Stats()
	log.Info("stopped",
		zap.Uint64("posted", st.Posted.Load()),
		zap.Uint64("delivered", st.Delivered.Load()),
		zap.Uint64("evicted_ttl", st.EvictedTTL.Load()),
		zap.Uint64("evicted_memory", st.EvictedMemory.Load()),
		zap.Int("mailboxes", snap.Mailboxes),
		zap.Duration("uptime", time.Since(started)))
	return nil
}

// readState loads the state file; run removes it once the server is ready.
func readState(path string, n *int) (map[actor.ID][]actor.Message, error) {
	if path == "" {
		return nil, nil
	}
	msgs, err := statefile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("state_file %s: %w", path, err)
	}
	for _, l := range msgs {
		*n += len(l)
	}
	return msgs, nil
}
