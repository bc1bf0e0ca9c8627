package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

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
		// The token file and the TLS pair are read here by the functions
		// the start reads them with, so a config that passes also starts.
		if _, err := newGuard(res.Config, zap.NewNop()); err != nil {
			return exitError{code: 2, err: err}
		}
		if _, err := setupTLS(res.Config, zap.NewNop(), nil); err != nil {
			return exitError{code: 2, err: err}
		}
		if err := checkStateFile(res); err != nil {
			return err
		}
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
	if err := checkStateFile(res); err != nil {
		return err
	}
	restore := readState(cfg.StateFile, time.Now(), log)
	var restored int
	for _, l := range restore.Messages {
		restored += len(l)
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
		Restore:          restore.Messages,
		Epoch:            restore.Epoch,
	})
	// Z9: the epoch is kept only when a state file was restored with one.
	log.Info("started supervisor", zap.Duration("took", time.Since(t0)), zap.Int("restored_messages", restored),
		zap.String("epoch", sup.Epoch()), zap.Bool("epoch_kept", restore.Epoch != ""))

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
		PerSource: cfg.MaxConnectionsPerSource, Sources: gd,
	})
	defer conns.Close()
	pending := httpapi.NewPending()
	handler := httpapi.New(httpapi.Deps{
		Mailboxes: sup,
		Guard:     gd,
		Conns:     conns,
		Pending:   pending,
		Logger:    log.Named("http"),
		Metrics:   set,
		Options: httpapi.Options{
			MaxMessageSize:  cfg.MaxMessageSize,
			LongPollDefault: cfg.LongPollDefault(),
			LongPollMax:     cfg.LongPollMax(),
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
	srv.ConnState = conns.ConnState // idle connections give way near the cap
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
		metricsSrv.ConnState = metricsConns.ConnState
		go func() { serveErr <- metricsSrv.Serve(mln) }()
		log.Info("serving metrics", zap.String("addr", mln.Addr().String()))
	}
	step("http server", t0)
	// The restored messages are in the actors and the server is listening:
	// only now is the state file consumed, so that a start that fails above
	// (a bad token file, a port in use) leaves it for the next one. It goes
	// before the ready line, on which whatever watches the process may act.
	if restore.Messages != nil {
		if err := os.Remove(cfg.StateFile); err != nil {
			log.Warn("could not remove the state file; its messages may be delivered again after the next restart",
				zap.String("state_file", cfg.StateFile), zap.Error(err))
		}
	}
	log.Info("ready", zap.String("addr", ln.Addr().String()), zap.Bool("tls", tlsOn),
		zap.Duration("startup", time.Since(started)))

	reloadFailures := newReloadFailures(set)
	pairs := newPairReloader(certs, cfg, log.Named("tls"))
	rl := &reloader{res: res, running: cfg, getenv: getenv, log: log.Named("reload"), failures: reloadFailures, hooks: []reloadHook{
		func(next conf.Config) (func(), error) {
			return func() { level.SetLevel(parseLevel(next.LogLevel)) }, nil
		},
		guardHook(gd, cfg, log.Named("guard")),
		tlsHook(pairs, reloadFailures.Inc),
	}}
	// Reload on a change of the config or token file too: Windows has no
	// SIGHUP (R5.6, R10.6).
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		watchFiles(watchCtx, fileWatchInterval, rl.watchedFiles, func() { rl.reload("file changed") }, pairs.retry)
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

	// http.Server.Close does not wait for handlers: an answer whose write
	// failed may still be putting its message back. The supervisor keeps
	// what comes back after its close, and the leftovers are taken only
	// once every answer is over, so such a message is in the state file
	// (Z12).
	t0 = time.Now()
	answersCtx, cancelAnswers := context.WithTimeout(context.Background(), answerGrace)
	if n, err := pending.Wait(answersCtx); err != nil {
		log.Error("answers still running after the http server closed; messages they put back are lost",
			zap.Int64("answers", n), zap.Duration("waited", answerGrace))
	}
	cancelAnswers()
	snap := sup.Snapshot()
	left := sup.Leftovers() // closes the supervisor
	log.Info("stopped supervisor", zap.Duration("took", time.Since(t0)))
	if cfg.StateFile != "" {
		n, err := statefile.Write(cfg.StateFile, statefile.State{Epoch: sup.Epoch(), Messages: left})
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

// answerGrace bounds the wait for answers still being written once the
// HTTP server has closed. Their connections are closed by then, so their
// writes fail at once; the bound only keeps a stuck one from holding up
// the state file.
const answerGrace = 2 * time.Second

// checkStateFile is checkStateDir on the config's state_file, as the
// exit-2 config error both the start and --check-config answer with.
func checkStateFile(res *conf.Result) error {
	if err := checkStateDir(res.Config.StateFile); err != nil {
		return exitError{code: 2, err: &conf.Error{Problems: []conf.Problem{
			{Key: "state_file", Source: res.Sources["state_file"], Message: err.Error()},
		}}}
	}
	return nil
}

// checkStateDir checks at start that the state file can be written at
// shutdown (Z12): its directory exists and takes a new file, and the path
// is not a directory. "" (no state file) passes.
func checkStateDir(path string) error {
	if path == "" {
		return nil
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory; want a file path", path)
	}
	dir := filepath.Dir(path)
	// Creating a file is the test that holds whatever the permission bits
	// say (root ignores them, a read-only mount does not).
	f, err := os.CreateTemp(dir, filepath.Base(path)+".probe*")
	if err != nil {
		// The probe's random name says nothing to the operator; the cause does.
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = pe.Err
		}
		return fmt.Errorf("directory %s must exist and be writable, so the state can be written at shutdown: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// readState loads the state file; run removes it once the server is ready.
// A file that cannot be read or decoded never stops the server (Z12): it
// is moved aside to <path>.corrupt-<UTC time>, an error line says why, and
// the server starts empty with a new epoch. No file (or no state_file) is
// a start without earlier state.
func readState(path string, now time.Time, log *zap.Logger) statefile.State {
	if path == "" {
		return statefile.State{}
	}
	st, err := statefile.Read(path)
	if err == nil {
		if st == nil {
			return statefile.State{}
		}
		return *st
	}
	aside := path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	if rerr := os.Rename(path, aside); rerr != nil {
		log.Error("state file unreadable and could not be moved aside; starting empty with a new epoch",
			zap.String("state_file", path), zap.Error(err), zap.NamedError("rename_error", rerr))
		return statefile.State{}
	}
	log.Error("state file unreadable; moved aside, starting empty with a new epoch",
		zap.String("state_file", path), zap.String("moved_to", aside), zap.Error(err))
	return statefile.State{}
}
