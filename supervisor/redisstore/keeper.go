package redisstore

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// keepInterval is how often a node looks at Redis while it answers: the
// epoch, and whether it is there at all for /health.
const keepInterval = time.Second

// keep watches Redis for the node's life: until it first answers, it
// retries with backoff (a node starts before its Redis); then it checks
// maxmemory-policy once and, every keepInterval, that Redis answers and
// what the epoch is.
func (s *Store) keep(ctx context.Context, checked bool) {
	defer close(s.done)
	down := !s.up.Load()
	if down {
		s.log.Warn("store unavailable at start; mailbox routes answer 503 store_unavailable until it answers")
	}
	backoff := minBackoff
	wait := keepInterval
	if down {
		wait = backoff
	}
	for {
		if !sleep(ctx, wait) {
			return
		}
		err := s.check(ctx, &checked)
		wait = keepInterval
		switch {
		case errors.Is(err, ErrEvictingPolicy):
			s.fatal <- err
			return
		case err != nil:
			s.up.Store(false)
			if !down {
				down = true
				s.log.Warn("store unavailable; mailbox routes answer 503 store_unavailable until it is back", zap.Error(err))
			}
			wait, backoff = backoff, min(2*backoff, maxBackoff)
		default:
			s.up.Store(true)
			if down {
				down = false
				s.log.Info("store available")
			}
			backoff = minBackoff
		}
	}
}

// check asks Redis for the epoch (making one if Redis has none: it is
// new or lost its data) and, the first time it answers, for its
// maxmemory-policy.
func (s *Store) check(ctx context.Context, checked *bool) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if !*checked {
		if err := s.checkPolicy(ctx); err != nil {
			return err
		}
		*checked = true
	}
	if s.cluster != nil {
		// Every master, so that /health tells a shard that is down.
		if err := s.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.Ping(ctx).Err()
		}); err != nil {
			return err
		}
	}
	key := s.opts.KeyPrefix + "epoch"
	epoch, err := s.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		if err = s.rdb.SetNX(ctx, key, rand.Text(), 0).Err(); err == nil {
			epoch, err = s.rdb.Get(ctx, key).Result()
		}
	}
	if err != nil {
		return err
	}
	if old := s.Epoch(); old != epoch {
		s.epoch.Store(&epoch)
		if old != "" {
			s.log.Warn("epoch changed: the store lost its data; clients see the new epoch", zap.String("epoch", epoch))
		} else {
			s.log.Info("store epoch", zap.String("epoch", epoch))
		}
	}
	return nil
}

// checkPolicy refuses a Redis that may evict keys, that is, drop queued
// messages, unless redis_require_noeviction is off (then it warns).
func (s *Store) checkPolicy(ctx context.Context) error {
	if s.cluster != nil {
		// Each master holds its own shard of the queues.
		return s.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return s.checkPolicyOf(ctx, c)
		})
	}
	return s.checkPolicyOf(ctx, s.rdb)
}

func (s *Store) checkPolicyOf(ctx context.Context, rdb redis.Cmdable) error {
	policy, err := evictionPolicy(ctx, rdb)
	if err != nil {
		return err
	}
	if policy == "noeviction" {
		return nil
	}
	if s.opts.RequireNoEviction {
		return fmt.Errorf("%w, got %q (set it in redis.conf, or redis_require_noeviction = false to accept losing messages)", ErrEvictingPolicy, policy)
	}
	s.log.Warn("redis may evict queued messages: maxmemory-policy is not noeviction", zap.String("policy", policy))
	return nil
}

// evictionPolicy reads maxmemory-policy with CONFIG GET, or from INFO memory
// where CONFIG is disabled (managed Redis services).
func evictionPolicy(ctx context.Context, rdb redis.Cmdable) (string, error) {
	if m, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result(); err == nil && m["maxmemory-policy"] != "" {
		return m["maxmemory-policy"], nil
	}
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "maxmemory_policy:"); ok {
			return v, nil
		}
	}
	return "", errors.New("redis reports no maxmemory-policy")
}
