package client

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"time"
)

// RetryPolicy bounds how a Client retries a refused or failed request.
// Only 429 and 503 answers (which guarantee nothing was queued or taken)
// and failed connections are retried: a GET on any connection failure, a
// POST only when the connection could not be opened, because a POST whose
// body may have reached the server may have been queued.
type RetryPolicy struct {
	// MaxAttempts counts the first attempt: 1 (or less) never retries.
	MaxAttempts int
	// MaxWait bounds the total time slept between attempts. A retry whose
	// wait would pass it is not made: the last answer is returned instead.
	MaxWait time.Duration
	// BaseDelay is the first backoff; each retry doubles it, up to
	// MaxDelay. A wait is the backoff with its upper half jittered, or the
	// server's Retry-After when that is longer: Retry-After is honoured
	// even above MaxDelay, within MaxWait.
	BaseDelay, MaxDelay time.Duration
}

// DefaultRetry is a Client's policy unless WithRetry replaces it.
var DefaultRetry = RetryPolicy{MaxAttempts: 5, MaxWait: 30 * time.Second, BaseDelay: 250 * time.Millisecond, MaxDelay: 10 * time.Second}

// NoRetry makes every request once, so that each answer is seen (load
// tests count them).
var NoRetry = RetryPolicy{MaxAttempts: 1}

// delay is the wait before retry number n (0 for the first retry): the
// exponential backoff, jittered in its upper half so that clients refused
// together do not come back together, or retryAfter when longer.
func (p RetryPolicy) delay(n int, retryAfter time.Duration) time.Duration {
	ceiling := max(p.MaxDelay, p.BaseDelay)
	b := p.BaseDelay
	for range n {
		if b >= ceiling/2 {
			b = ceiling
			break
		}
		b *= 2
	}
	if b > 1 {
		b = b/2 + rand.N(b/2+1)
	}
	return max(b, retryAfter)
}

// op is what a request does, which decides what may be retried.
type op uint8

const (
	opPost op = iota
	opGet
)

// do sends the request build makes, once per attempt, and returns the
// first 2xx response; a refusal becomes an *Error. A refusal or failure
// that may be retried (see RetryPolicy) is, while the policy allows; when
// ctx ends during a wait, the error joins ctx's error with the last
// failure.
func (c *Client) do(ctx context.Context, o op, build func() (*http.Request, error)) (*http.Response, error) {
	var waited time.Duration
	for attempt := 1; ; attempt++ {
		req, err := build()
		if err != nil {
			return nil, err
		}
		var failure error
		var after time.Duration
		resp, err := c.hc.Do(req)
		switch {
		case err != nil:
			if ctx.Err() != nil || o == opPost && !dialFailed(err) {
				return nil, err
			}
			failure = err
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			return resp, nil
		default:
			body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
			resp.Body.Close()
			e := responseError(resp, body)
			e.RetryAfter = retryAfter(resp.Header, c.now())
			if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
				return nil, e
			}
			failure, after = e, e.RetryAfter
		}
		if attempt >= c.retry.MaxAttempts {
			return nil, failure
		}
		d := c.retry.delay(attempt-1, after)
		if waited+d > c.retry.MaxWait {
			return nil, failure
		}
		if err := c.sleep(ctx, d); err != nil {
			return nil, errors.Join(err, failure)
		}
		waited += d
	}
}

// dialFailed reports whether err is a connection that could not be
// opened: nothing of the request was sent.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
