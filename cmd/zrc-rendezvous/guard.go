package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/conf"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/guard"
)

// fileWatchInterval is how often the config file and the mailbox token
// file are checked for changes. Windows has no SIGHUP, so this is its only
// way to reload (R5.6, R10.6).
const fileWatchInterval = 2 * time.Second

// guardOptions turns the configuration into the abuse controls' options
// (R4, R5), reading mailbox_tokens_file when auth_mode is per_mailbox.
func guardOptions(c conf.Config, log *zap.Logger) (guard.Options, error) {
	mode, err := guard.ParseMode(c.AuthMode)
	if err != nil {
		return guard.Options{}, err
	}
	o := guard.Options{
		PostsPerWindow:      c.RateLimitPostsPerMinute,
		GetsPerWindow:       c.RateLimitGetsPerMinute,
		Window:              c.RateLimitWindow(),
		IPv6Prefix:          c.RateLimitIPv6Prefix,
		MaxSources:          c.RateLimitMaxSources,
		MaxWaitingPerSource: c.MaxWaitingPerSource,
		Allowlist:           c.IPAllowlist,
		Blocklist:           c.IPBlocklist,
		TrustedProxies:      c.TrustedProxies,
		Mode:                mode,
		ServerTokens:        c.AuthTokens,
		Logger:              log,
	}
	if mode == guard.PerMailbox {
		t, err := guard.LoadMailboxTokens(c.MailboxTokensFile)
		if err != nil {
			return guard.Options{}, fmt.Errorf("mailbox_tokens_file %s: %w", c.MailboxTokensFile, err)
		}
		o.MailboxTokens = t
	}
	return o, nil
}

// newGuard builds the abuse controls for the start-up configuration;
// shared, if set, holds the rate-limit buckets every node sees, and
// fallbacks counts the requests decided without it.
func newGuard(c conf.Config, log *zap.Logger, shared guard.SharedBuckets, fallbacks func()) (*guard.Guard, error) {
	o, err := guardOptions(c, log)
	if err != nil {
		return nil, err
	}
	o.Shared, o.OnSharedFallback = shared, fallbacks
	return guard.New(o)
}

// guardHook is the reload hook of the abuse controls (R5.6): it reads the
// new tokens, token file, lists, trusted proxies and rate-limit numbers
// and prepares them, all before any is applied; the commit swaps them in
// at once. Keys that need a restart (auth_mode, max_waiting_per_source)
// keep their start-up values from base.
func guardHook(g *guard.Guard, base conf.Config, log *zap.Logger) reloadHook {
	return func(next conf.Config) (func(), error) {
		c := liveConfig(base, next)
		o, err := guardOptions(c, log)
		if err != nil {
			return nil, err
		}
		commit, err := g.Prepare(o)
		if err != nil {
			return nil, err
		}
		return func() {
			commit()
			log.Info("abuse controls reloaded", zap.String("auth_mode", c.AuthMode),
				zap.Int("auth_tokens", len(c.AuthTokens)), zap.Int("mailboxes_with_tokens", o.MailboxTokens.Len()),
				zap.Int("ip_allowlist", len(c.IPAllowlist)), zap.Int("ip_blocklist", len(c.IPBlocklist)),
				zap.Int("trusted_proxies", len(c.TrustedProxies)))
		}, nil
	}
}

// liveConfig is base with the live keys (conf.LiveKeys) taken from next.
func liveConfig(base, next conf.Config) conf.Config {
	conf.CopyKeys(&base, next, conf.LiveKeys())
	return base
}

// watchedFiles are the files whose change triggers a reload: the config
// file, and the mailbox token file in force.
func (r *reloader) watchedFiles() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var files []string
	if r.res != nil && r.res.ConfigPath != "" {
		files = append(files, r.res.ConfigPath)
	}
	if r.running.MailboxTokensFile != "" {
		files = append(files, r.running.MailboxTokensFile)
	}
	return files
}

// fileStamp is what a poll compares: a change of either, or the file
// appearing or going, counts as a change.
type fileStamp struct {
	mod  int64 // unix ns
	size int64
	ok   bool
}

func stamp(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{mod: fi.ModTime().UnixNano(), size: fi.Size(), ok: true}
}

// watchFiles polls the modification time and size of files() every
// interval and calls changed once for each poll that sees any of them
// differ from the previous poll, and idle for each poll that does not
// (a TLS pair that failed to load is retried then). It returns when ctx
// ends.
func watchFiles(ctx context.Context, interval time.Duration, files func() []string, changed, idle func()) {
	seen := map[string]fileStamp{}
	for _, f := range files() {
		seen[f] = stamp(f)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := map[string]fileStamp{}
		differ := false
		for _, f := range files() {
			s := stamp(f)
			now[f] = s
			if old, ok := seen[f]; !ok || old != s {
				differ = true
			}
		}
		if !differ {
			idle()
		} else {
			changed()
			// The reload may have named another token file: watch it from
			// its state now.
			for _, f := range files() {
				if _, ok := now[f]; !ok {
					now[f] = stamp(f)
				}
			}
		}
		seen = now
	}
}
