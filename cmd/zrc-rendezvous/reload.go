package main

import (
	"errors"
	"sync"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/conf"
)

// newReloadFailures is zrc_rendezvous_reload_failures_total: reloads
// refused, and reloads whose TLS pair could not be loaded. It exists at
// zero from the start, so an alert on its increase sees the first one.
// Without metrics it counts for nobody.
func newReloadFailures(set *metrics.Set) *metrics.Counter {
	if set == nil {
		return new(metrics.Counter)
	}
	return set.NewCounter("zrc_rendezvous_reload_failures_total")
}

// reloadHook prepares one component for a new config: it reads and checks
// whatever it needs (a token file, a certificate pair) and returns the swap
// to make, or an error that refuses the whole reload. Hooks run in order,
// commits only once every hook has prepared, so a reload applies entirely
// or not at all.
type reloadHook func(next conf.Config) (commit func(), err error)

// reloader re-reads the configuration on SIGHUP (or any other trigger) and
// applies it through its hooks.
type reloader struct {
	mu sync.Mutex // one reload at a time
	// res is the last configuration read, whose command-line flags every
	// reload applies again; running is the configuration in force: the
	// start-up values of keys that need a restart, the latest of the rest.
	res     *conf.Result
	running conf.Config
	getenv  func(string) string
	log     *zap.Logger
	hooks   []reloadHook
	// failures counts refused reloads (newReloadFailures); never nil.
	failures *metrics.Counter
}

// reload re-reads the config file and the environment (keeping the
// command line's flags) and applies the live keys. A bad file, or a change
// to a refused key, keeps the running config, logs every problem and
// counts a failure. Which keys it applies, ignores or refuses is each
// key's conf.ReloadRule. It reports whether it applied.
func (r *reloader) reload(trigger string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	log := r.log.With(zap.String("trigger", trigger))
	if !r.apply(log) {
		r.failures.Inc()
		return false
	}
	return true
}

// apply is reload's work, with r.mu held.
func (r *reloader) apply(log *zap.Logger) bool {
	next, err := conf.Reload(r.res, r.getenv)
	if err != nil {
		var cerr *conf.Error
		if errors.As(err, &cerr) {
			for _, p := range cerr.Problems {
				log.Error("reload refused; keeping the running config",
					zap.String("key", p.Key), zap.String("source", p.Source), zap.String("problem", p.Message))
			}
		} else {
			log.Error("reload refused; keeping the running config", zap.Error(err))
		}
		return false
	}
	changed := conf.ChangedKeys(r.running, next.Config)
	refused := false
	for _, key := range changed {
		if conf.ReloadOf(key) == conf.Refuse {
			log.Error("reload refused; keeping the running config", zap.String("key", key),
				zap.String("source", next.Sources[key]),
				zap.String("problem", "a change of "+key+" needs a restart; the running value stays in force and nothing of this reload is applied until the restart, or until the change is undone"))
			refused = true
		}
	}
	if refused {
		return false
	}
	var commits []func()
	for _, hook := range r.hooks {
		commit, err := hook(next.Config)
		if err != nil {
			log.Error("reload refused; keeping the running config", zap.Error(err))
			return false
		}
		if commit != nil {
			commits = append(commits, commit)
		}
	}
	for _, commit := range commits {
		commit()
	}
	var applied, restart []string
	for _, key := range changed {
		if conf.ReloadOf(key) == conf.Live {
			applied = append(applied, key)
		} else {
			restart = append(restart, key)
		}
	}
	if len(restart) > 0 {
		log.Warn("changed keys need a restart; ignored until then", zap.Strings("keys", restart))
	}
	conf.CopyKeys(&r.running, next.Config, applied)
	r.res = next
	log.Info("reloaded config", zap.Strings("applied", applied))
	return true
}
