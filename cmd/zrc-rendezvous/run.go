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

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/conf"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/guard"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/tlsreload"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor/redisstore"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor/statefile"
)

// metricsMaxConnections caps the metrics listener's open connections.
const metricsMaxConnections = 64

func versionLine() string {
	return fmt.Sprintf("zrc-rendezvous %s (%s, %s)", version, commit, runtime.Version())
}

// run is the whole server: it returns when ctx ends (SIGTERM/SIGINT) and
// the shutdown is complete, or on a start-up error.
//
// The start is a sequence of components (lifecycle): runtime memory
// policy, state file, supervisor, abuse controls, TLS, HTTP server,
// reloader. The stop runs it backwards, and the order is what keeps every
// accepted message (R9, Z12, STYLE 14): the reloader stops watching files;
// the HTTP server cancels the root context so parked long-polls answer 503
// at once (Shutdown alone would leave them parked), drains in-flight
// requests up to shutdown_timeout_seconds and closes the rest; the
// supervisor waits for answers still putting back messages whose write
// failed (at most answerGrace), closes and takes the leftovers; the state
// file is written with them; the runtime memory policy is undone; the
// totals line comes last.
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
		if _, err := newGuard(res.Config, zap.NewNop(), nil, nil); err != nil {
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

	var set *metrics.Set
	if cfg.MetricsEnabled {
		set = metrics.NewSet()
	}

	// SIGHUP is caught from the reloader's start until run returns, not
	// released by the reloader's stop: one arriving during the drain would
	// otherwise end the process (its default action) before the state file
	// is written.
	hup := make(chan os.Signal, 1)
	defer signal.Stop(hup)
	lc := &lifecycle{log: log}
	defer lc.stop() // after a start error; the stop below has emptied it otherwise
	// consumed is set once the state file has been read into the actors
	// and removed; only then does the stop write it. A start that fails
	// before leaves the file for the next one, and the supervisor is just
	// closed.
	consumed := false

	if err := lc.start("runtime memory policy", func() (func(), []zap.Field, error) {
		policy := applyMemoryPolicy(cfg.RuntimeMemoryLimitMB, getenv)
		return policy.start(), []zap.Field{zap.String("policy", policy.describe())}, nil
	}); err != nil {
		return err
	}

	var (
		restore   statefile.State
		sup       *supervisor.Supervisor
		left      map[actor.ID][]actor.Message
		mailboxes int // alive when the supervisor stopped
	)
	if cfg.StateFile != "" {
		if err := lc.start("state file", func() (func(), []zap.Field, error) {
			if err := checkStateFile(res); err != nil {
				return nil, nil, err
			}
			restore = readState(cfg.StateFile, time.Now(), log)
			return func() {
				if consumed {
					writeState(cfg.StateFile, statefile.State{Epoch: sup.Epoch(), Messages: left}, log)
				}
			}, []zap.Field{zap.String("state_file", cfg.StateFile)}, nil
		}); err != nil {
			return err
		}
	}

	// The Redis store (Z13) starts before the supervisor that uses it and
	// stops after it. It connects in the background: a node may start
	// before its Redis, and answers 503 store_unavailable until then.
	var store *redisstore.Store
	if cfg.Store == "redis" {
		if err := lc.start("redis store", func() (func(), []zap.Field, error) {
			var err error
			store, err = redisstore.New(redisstore.Options{
				URL:               cfg.RedisURL,
				Mode:              cfg.RedisMode,
				MasterName:        cfg.RedisMasterName,
				KeyPrefix:         cfg.RedisKeyPrefix,
				Timeout:           cfg.RedisTimeout(),
				Lease:             cfg.RedisLease(),
				TTL:               cfg.MessageTTL(),
				MaxQueueLength:    cfg.MaxQueueLength,
				RequireNoEviction: cfg.RedisRequireNoEviction,
				WaitReplicas:      cfg.RedisWaitReplicas,
				Logger:            log.Named("store"),
				Metrics:           set,
			})
			if err != nil {
				return nil, nil, exitError{code: 2, err: err}
			}
			return func() { store.Close() }, []zap.Field{zap.String("redis", cfg.RedactedRedisURL()),
				zap.Bool("available", store.Available()), zap.String("epoch", store.Epoch())}, nil
		}); err != nil {
			return err
		}
	}
	var storeFatal <-chan error
	var sharedStore supervisor.Store
	if store != nil {
		storeFatal, sharedStore = store.Fatal(), store
	}

	pending := httpapi.NewPending()
	if err := lc.start("supervisor", func() (func(), []zap.Field, error) {
		var restored int
		for _, l := range restore.Messages {
			restored += len(l)
		}
		sup = supervisor.New(supervisor.Options{
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
			Store:            sharedStore,
		})
		stop := func() {
			if !consumed {
				sup.Close()
				return
			}
			// http.Server.Close does not wait for handlers: an answer whose
			// write failed may still be putting its message back. The
			// supervisor keeps what comes back after its close, and the
			// leftovers are taken only once every answer is over, so such
			// a message is in the state file (Z12).
			answersCtx, cancelAnswers := context.WithTimeout(context.Background(), answerGrace)
			defer cancelAnswers()
			if n, err := pending.Wait(answersCtx); err != nil {
				log.Error("answers still running after the http server closed; messages they put back are lost",
					zap.Int64("answers", n), zap.Duration("waited", answerGrace))
			}
			mailboxes = sup.Snapshot().Mailboxes
			left = sup.Leftovers() // closes the supervisor
		}
		// Z9: the epoch is kept only when a state file was restored with one.
		return stop, []zap.Field{zap.Int("restored_messages", restored),
			zap.String("epoch", sup.Epoch()), zap.Bool("epoch_kept", restore.Epoch != "")}, nil
	}); err != nil {
		return err
	}

	var gd *guard.Guard
	if err := lc.start("abuse controls", func() (func(), []zap.Field, error) {
		// With the Redis store a source's buckets are one budget across
		// every node; while Redis does not answer, this node's decide.
		var shared guard.SharedBuckets
		var fallbacks func()
		if store != nil && cfg.RedisSharedRateLimits {
			shared, fallbacks = store, set.NewCounter("zrc_rendezvous_rate_limit_fallbacks_total").Inc
		}
		var err error
		if gd, err = newGuard(cfg, log.Named("guard"), shared, fallbacks); err != nil {
			return nil, nil, exitError{code: 2, err: err}
		}
		return nil, []zap.Field{zap.String("auth_mode", cfg.AuthMode), zap.Bool("shared_rate_limits", shared != nil)}, nil
	}); err != nil {
		return err
	}

	var certs *tlsreload.Certs
	if err := lc.start("tls", func() (func(), []zap.Field, error) {
		var err error
		if certs, err = setupTLS(cfg, log.Named("tls"), set); err != nil {
			return nil, nil, exitError{code: 2, err: err}
		}
		return nil, []zap.Field{zap.Bool("enabled", certs != nil)}, nil
	}); err != nil {
		return err
	}

	var front *frontend
	if err := lc.start("http server", func() (func(), []zap.Field, error) {
		var err error
		front, err = startFrontend(cfg, httpapi.Deps{
			Mailboxes: sup,
			Guard:     gd,
			Pending:   pending,
			Logger:    log.Named("http"),
			Metrics:   set,
		}, certs, started, log)
		if err != nil {
			return nil, nil, err
		}
		return front.stop, nil, nil
	}); err != nil {
		return err
	}

	var rl *reloader
	if err := lc.start("reloader", func() (func(), []zap.Field, error) {
		reloadFailures := newReloadFailures(set)
		pairs := newPairReloader(certs, cfg, log.Named("tls"))
		rl = &reloader{res: res, running: cfg, getenv: getenv, log: log.Named("reload"), failures: reloadFailures, hooks: []reloadHook{
			func(next conf.Config) (func(), error) {
				return func() { level.SetLevel(parseLevel(next.LogLevel)) }, nil
			},
			guardHook(gd, cfg, log.Named("guard")),
			tlsHook(pairs, reloadFailures.Inc),
		}}
		// Reload on a change of the config or token file too: Windows has
		// no SIGHUP (R5.6, R10.6).
		watchCtx, stopWatch := context.WithCancel(ctx)
		watchDone := make(chan struct{})
		go func() {
			defer close(watchDone)
			watchFiles(watchCtx, fileWatchInterval, rl.watchedFiles, func() { rl.reload("file changed") }, pairs.retry)
		}()
		signal.Notify(hup, syscall.SIGHUP)
		return func() { stopWatch(); <-watchDone }, nil, nil
	}); err != nil {
		return err
	}

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
	consumed = true
	log.Info("ready", zap.String("addr", front.addr.String()), zap.Bool("tls", certs != nil),
		zap.Duration("startup", time.Since(started)))

	var exit error
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case err := <-storeFatal:
			// Redis may evict queued messages: stop rather than lose them.
			log.Error("stopping: the store is unsafe", zap.Error(err))
			exit, running = exitError{code: 2, err: err}, false
		case err := <-front.serveErr:
			if !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server failed", zap.Error(err))
				running = false
			}
		case <-hup:
			rl.reload("SIGHUP")
		}
	}

	// Shutdown (R9.1–R9.5): the components' stops, last started first.
	log.Info("shutting down", zap.Duration("drain_limit", cfg.ShutdownTimeout()),
		zap.Int64("waiting_long_polls", sup.Snapshot().Waiting))
	lc.stop()
	st := sup.Stats()
	log.Info("stopped",
		zap.Uint64("posted", st.Posted.Load()),
		zap.Uint64("delivered", st.Delivered.Load()),
		zap.Uint64("evicted_ttl", st.EvictedTTL.Load()),
		zap.Uint64("evicted_memory", st.EvictedMemory.Load()),
		zap.Int("mailboxes", mailboxes),
		zap.Duration("uptime", time.Since(started)))
	return exit
}

// frontend is the HTTP side of the server: the main listener and its
// server, the metrics listener when metrics_listen is set, their
// connection caps, and net/http's error log.
type frontend struct {
	log        *zap.Logger
	cancelRoot context.CancelCauseFunc
	drain      time.Duration // shutdown_timeout_seconds

	srv          *http.Server
	conns        *httpapi.ConnLimit
	metricsSrv   *http.Server       // nil without metrics_listen
	metricsConns *httpapi.ConnLimit // nil without metrics_listen
	netLog       *tlsreload.ErrorLog

	addr     net.Addr   // the main listener's
	serveErr chan error // what Serve returned, per server
}

// startFrontend listens and serves. d is the handler's dependencies but
// the connection cap, which it makes; certs is nil without TLS. On an
// error nothing it started is left running.
func startFrontend(cfg conf.Config, d httpapi.Deps, certs *tlsreload.Certs, started time.Time, log *zap.Logger) (_ *frontend, err error) {
	f := &frontend{log: log, drain: cfg.ShutdownTimeout(), serveErr: make(chan error, 2)}
	// Every request context derives from root; cancelling it with
	// ErrShuttingDown answers parked long-polls 503 at once (R9.4), which
	// http.Server.Shutdown alone would not do.
	root, cancelRoot := context.WithCancelCause(context.Background())
	f.cancelRoot = cancelRoot
	f.conns = httpapi.NewConnLimit(httpapi.ConnLimitOptions{
		Max: cfg.MaxConnections, Logger: log.Named("http"), Metrics: d.Metrics,
		PerSource: cfg.MaxConnectionsPerSource, Sources: d.Guard,
	})
	// net/http's own error lines, failed TLS handshakes aggregated (R8.6).
	f.netLog = tlsreload.NewErrorLog(log.Named("net/http"), d.Metrics, netHTTPLogInterval)
	d.Conns = f.conns
	d.Options = httpapi.Options{
		MaxMessageSize:  cfg.MaxMessageSize,
		LongPollDefault: cfg.LongPollDefault(),
		LongPollMax:     cfg.LongPollMax(),
		ServeMetrics:    cfg.MetricsEnabled && cfg.MetricsListen == "",
		Version:         version,
		Started:         started,
	}
	errLog := f.netLog.Logger()
	mainAddr := net.JoinHostPort(cfg.ListenAddr, strconv.Itoa(cfg.ListenPort))
	f.srv = httpapi.NewServer(httpapi.New(d), root, httpapi.ServerOptions{
		Addr: mainAddr, LongPollMax: cfg.LongPollMax(), ErrorLog: errLog,
		MaxMessageSize: cfg.MaxMessageSize,
	})
	f.srv.ConnState = f.conns.ConnState // idle connections give way near the cap
	defer func() {
		if err != nil {
			f.srv.Close()
			f.conns.Close()
			f.netLog.Close()
			cancelRoot(nil)
		}
	}()
	ln, err := net.Listen("tcp", mainAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (listen_addr, listen_port): %w", mainAddr, err)
	}
	f.addr = ln.Addr()
	if certs != nil {
		// R8.1, R8.3, R8.5: HTTPS only, TLS 1.2 at least, the pair in
		// force through GetCertificate; ServeTLS negotiates HTTP/2
		// through ALPN.
		f.srv.TLSConfig = certs.ServerConfig()
	}
	// Every connection counts against max_connections from accept on;
	// past the cap it is refused under the TLS layer ServeTLS adds.
	ln = f.conns.Listener(ln, f.srv.TLSConfig)
	go func() {
		if certs != nil {
			f.serveErr <- f.srv.ServeTLS(ln, "", "")
		} else {
			f.serveErr <- f.srv.Serve(ln)
		}
	}()
	if d.Metrics != nil && cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return nil, fmt.Errorf("listen on %s (metrics_listen): %w", cfg.MetricsListen, err)
		}
		// A scraper needs a connection or two; the listener has no
		// authentication, so its connections are capped like the main
		// listener's, lest it run the process out of file descriptors.
		f.metricsConns = httpapi.NewConnLimit(httpapi.ConnLimitOptions{
			Max: metricsMaxConnections, Logger: log.Named("metrics"), Cap: "the metrics listener's connection cap",
		})
		mln = f.metricsConns.Listener(mln, nil)
		f.metricsSrv = httpapi.NewServer(httpapi.MetricsHandler(d.Metrics), root, httpapi.ServerOptions{
			Addr: cfg.MetricsListen, ErrorLog: errLog,
		})
		f.metricsSrv.ConnState = f.metricsConns.ConnState
		go func() { f.serveErr <- f.metricsSrv.Serve(mln) }()
		log.Info("serving metrics", zap.String("addr", mln.Addr().String()))
	}
	return f, nil
}

// stop stops accepting, answers parked long-polls 503 at once, drains the
// rest up to shutdown_timeout_seconds, then force-closes (R9.1–R9.5).
func (f *frontend) stop() {
	f.cancelRoot(httpapi.ErrShuttingDown)
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), f.drain)
	defer cancelDrain()
	if f.metricsSrv != nil {
		go f.metricsSrv.Shutdown(drainCtx)
	}
	if err := f.srv.Shutdown(drainCtx); err != nil {
		f.log.Warn("drain limit reached; closing remaining connections", zap.Error(err))
		f.srv.Close()
	}
	if f.metricsSrv != nil {
		f.metricsSrv.Close()
		f.metricsConns.Close()
	}
	// The aggregated lines still pending (refusals at the cap, failed
	// handshakes) come out now, before the totals.
	f.conns.Close()
	f.netLog.Close()
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

// writeState writes the leftovers to the state file at the end of a
// stop (Z12).
func writeState(path string, st statefile.State, log *zap.Logger) {
	n, err := statefile.Write(path, st)
	if err != nil {
		log.Error("writing state file failed; queued messages are lost",
			zap.String("state_file", path), zap.Error(err))
		return
	}
	log.Info("wrote state file", zap.String("state_file", path), zap.Int("messages", n))
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
