package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// Client talks to one zrc-rendezvous server. It is safe for concurrent use;
// every call reuses the connections of its *http.Client.
type Client struct {
	base   string // scheme://host[:port][/prefix], no trailing slash
	urlErr error  // New's baseURL did not parse: every call returns it
	hc     *http.Client
	token  string             // Bearer token for mailbox requests; "" = none
	key    ed25519.PrivateKey // signs GETs (Z4); nil = none
	retry  RetryPolicy
	sleep  func(ctx context.Context, d time.Duration) error
	now    func() time.Time
	// maxBody bounds what a GET reads; a longer body is an error.
	maxBody int64
	ua      string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the Client send through hc, for its Transport
// (source addresses, TLS roots, proxies) or its connection pool. hc should
// have no Timeout shorter than the longest long-poll plus a margin: a GET
// waits on the server for up to its wait.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithToken sends "Authorization: Bearer <token>" on mailbox requests
// (auth_mode server_wide or per_mailbox, R5.1). The server ignores it
// where a request needs none.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithSigningKey signs every GET with key (auth_mode signature, Z4). The
// key owns exactly one mailbox, MailboxID(key.Public()); a Get of any
// other mailbox fails with ErrKeyMismatch before anything is sent.
func WithSigningKey(key ed25519.PrivateKey) Option { return func(c *Client) { c.key = key } }

// WithRetry replaces DefaultRetry.
func WithRetry(p RetryPolicy) Option { return func(c *Client) { c.retry = p } }

// WithSleep replaces the wait between attempts; tests pass a fake that
// records the delay and returns at once. sleep must return ctx's error
// when ctx ends first.
func WithSleep(sleep func(ctx context.Context, d time.Duration) error) Option {
	return func(c *Client) { c.sleep = sleep }
}

// WithClock replaces time.Now for signature timestamps and for reading a
// Retry-After given as an HTTP date.
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// WithMaxMessageSize bounds the bodies Get reads (default 64 MiB, far
// above any max_message_size a server is likely to run with).
func WithMaxMessageSize(n int64) Option { return func(c *Client) { c.maxBody = n } }

// WithUserAgent sets the User-Agent header (default "zrc-rendezvous-client").
func WithUserAgent(ua string) Option { return func(c *Client) { c.ua = ua } }

// ErrKeyMismatch is Get's answer when the signing key does not own the
// mailbox asked for: the server would refuse the GET with 403.
var ErrKeyMismatch = errors.New("client: the signing key does not own this mailbox (its recipient id is SHA-256 of its public key)")

// New returns a Client for the server at baseURL, e.g.
// "https://rendezvous.example.net" (a path prefix is kept, for a server
// behind a reverse proxy). A baseURL that does not parse is reported by
// every call.
func New(baseURL string, opts ...Option) *Client {
	c := &Client{
		retry:   DefaultRetry,
		sleep:   sleepCtx,
		now:     time.Now,
		maxBody: 64 << 20,
		ua:      "zrc-rendezvous-client",
	}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	switch {
	case err != nil:
		c.urlErr = fmt.Errorf("client: base URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		c.urlErr = fmt.Errorf("client: base URL %q: want http:// or https:// and a host", baseURL)
	default:
		c.base = u.String()
	}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: NewTransport()}
	}
	return c
}

// NewTransport is the Client's default Transport: http.DefaultTransport's
// settings (proxy from the environment, dial and TLS timeouts, HTTP/2),
// with room for many idle connections to one server. Every long-poll holds
// a connection, and Go's default of two idle connections per host would
// close and redial all but two of them after each poll.
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0 // no overall cap; the per-host one below bounds it
	t.MaxIdleConnsPerHost = 1024
	t.IdleConnTimeout = 90 * time.Second
	return t
}

// PostResult is the server's answer to an accepted POST (202, R1.3).
type PostResult struct {
	// Sequence is the message's number: strictly increasing within its
	// mailbox (R1.7). Receivers de-duplicate by it.
	Sequence uint64 `json:"sequence"`
	// QueueLength is how many messages the mailbox held right after this
	// POST; 0 when a waiting GET took it at once.
	QueueLength int `json:"queue_length"`
}

// Message is one delivered message (200, R2.3).
type Message struct {
	Body     []byte
	Sequence uint64
	// QueueLength is how many messages are still queued after this one
	// (0 when the server sent no X-Queue-Length).
	QueueLength int
}

// Health is GET /health's report (R6.1). Counters a server does not
// report stay zero.
type Health struct {
	Status           string `json:"status"` // healthy, overloaded, store_unavailable, shutting_down
	UptimeSeconds    int64  `json:"uptime_seconds"`
	Version          string `json:"version"`
	Epoch            string `json:"epoch"` // the lineage of the queued state (Z9)
	Mailboxes        int64  `json:"mailboxes"`
	BusyMailboxes    int64  `json:"busy_mailboxes"` // mailboxes holding a message or a waiting GET
	Messages         int64  `json:"messages"`
	QueuedBytes      int64  `json:"queued_bytes"`
	WaitingLongPolls int64  `json:"waiting_long_polls"`
	OpenConnections  int64  `json:"open_connections"`
}

// Error is a response the server refused with, carrying its JSON error
// code (SPEC "HTTP API"): errors.As(err, new(*client.Error)).
type Error struct {
	Status  int    // HTTP status
	Code    string // the JSON "error", e.g. "rate_limited"; "" if the body had none
	Message string // the JSON "message", or the start of a non-JSON body
	// RetryAfter is the server's Retry-After (429, 503), 0 if absent.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "zrc-rendezvous: %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	} else {
		b.WriteString(" " + http.StatusText(e.Status))
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %v)", e.RetryAfter)
	}
	return b.String()
}

// maxErrorBody bounds what is read of an error response.
const maxErrorBody = 64 << 10

// mailboxURL checks id (64 hex characters, either case) and returns the
// mailbox's URL and the id in lower case.
func (c *Client) mailboxURL(id string) (string, string, error) {
	if c.urlErr != nil {
		return "", "", c.urlErr
	}
	rid, err := actor.ParseID(id)
	if err != nil {
		return "", "", fmt.Errorf("client: %w", err)
	}
	s := rid.String()
	return c.base + "/v1/mailbox/" + s, s, nil
}

// Post queues body in mailbox id. A 429 or 503 is retried per the
// RetryPolicy (those answers guarantee nothing was queued), and so is a
// connection that could not be opened; any other failure is returned at
// once, since the server may have queued the message.
func (c *Client) Post(ctx context.Context, id string, body []byte) (PostResult, error) {
	u, _, err := c.mailboxURL(id)
	if err != nil {
		return PostResult{}, err
	}
	resp, err := c.do(ctx, opPost, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		c.authorize(req)
		return req, nil
	})
	if err != nil {
		return PostResult{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		drain(resp.Body)
		return PostResult{}, fmt.Errorf("client: POST answered %d; want 202", resp.StatusCode)
	}
	// The headers carry the answer (the JSON body repeats it); a server
	// that sends only the body is read too.
	if seq, ok := headerUint(resp.Header, "X-Message-Sequence"); ok {
		ql, _ := headerUint(resp.Header, "X-Queue-Length")
		drain(resp.Body)
		return PostResult{Sequence: seq, QueueLength: int(ql)}, nil
	}
	var r PostResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxErrorBody)).Decode(&r); err != nil {
		return PostResult{}, fmt.Errorf("client: 202 without a sequence: %w", err)
	}
	return r, nil
}

// Get takes the oldest message of mailbox id, waiting up to wait for one
// (a long-poll, R2.4; 0 answers at once, a negative wait leaves wait_ms
// out so the server's long_poll_default_ms applies). ok is false when no
// message arrived in time (204). A delivered message is removed from the
// mailbox (R2.6). A 429 or 503 (shutting_down during a restart) and a
// failed connection are retried per the RetryPolicy: a message handed to
// a GET whose answer could not be written goes back to the head of its
// queue (Z2), so a retry loses nothing; the server de-duplicates nothing,
// so a receiver should de-duplicate by Sequence.
func (c *Client) Get(ctx context.Context, id string, wait time.Duration) (msg Message, ok bool, err error) {
	u, rid, err := c.mailboxURL(id)
	if err != nil {
		return Message{}, false, err
	}
	if c.key != nil {
		pub, _ := c.key.Public().(ed25519.PublicKey)
		if len(c.key) != ed25519.PrivateKeySize || MailboxID(pub) != rid {
			return Message{}, false, ErrKeyMismatch
		}
	}
	if wait >= 0 {
		u += "?wait_ms=" + strconv.FormatInt(wait.Milliseconds(), 10)
	}
	resp, err := c.do(ctx, opGet, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		c.authorize(req)
		if c.key != nil {
			// A fresh nonce and timestamp for every attempt: the server
			// accepts each (key, nonce) pair once.
			nonce, err := NewNonce()
			if err != nil {
				return nil, err
			}
			s, err := SignGet(c.key, c.now(), nonce)
			if err != nil {
				return nil, err
			}
			s.Apply(req.Header)
		}
		return req, nil
	})
	if err != nil {
		return Message{}, false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent:
		drain(resp.Body)
		return Message{}, false, nil
	case http.StatusOK:
	default:
		drain(resp.Body)
		return Message{}, false, fmt.Errorf("client: GET answered %d; want 200 or 204", resp.StatusCode)
	}
	body, err := readBody(resp, c.maxBody)
	if err != nil {
		return Message{}, false, err
	}
	msg.Body = body
	msg.Sequence, _ = headerUint(resp.Header, "X-Message-Sequence")
	ql, _ := headerUint(resp.Header, "X-Queue-Length")
	msg.QueueLength = int(ql)
	return msg, true, nil
}

// Health reads GET /health. A 503 (overloaded, shutting_down) returns the
// report along with an *Error whose Code is its status; it is not
// retried, being an answer rather than a refusal. A server whose /health
// answers plain text gets that text as Status.
func (c *Client) Health(ctx context.Context) (Health, error) {
	if c.urlErr != nil {
		return Health{}, c.urlErr
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/health", nil)
	if err != nil {
		return Health{}, err
	}
	req.Header.Set("User-Agent", c.ua)
	resp, err := c.hc.Do(req)
	if err != nil {
		return Health{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return Health{}, err
	}
	var h Health
	if json.Unmarshal(b, &h) != nil || h.Status == "" {
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
			return Health{}, responseError(resp, b)
		}
		h = Health{Status: strings.TrimSpace(string(b))}
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return h, nil
	case http.StatusServiceUnavailable:
		return h, &Error{Status: resp.StatusCode, Code: h.Status, Message: "server reports " + h.Status,
			RetryAfter: retryAfter(resp.Header, c.now())}
	}
	return h, responseError(resp, b)
}

// authorize adds the Bearer token, if any.
func (c *Client) authorize(req *http.Request) {
	req.Header.Set("User-Agent", c.ua)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
}

// responseError builds the *Error for a refused request from its JSON
// body {"error":…,"message":…}, or from the start of a non-JSON body.
func responseError(resp *http.Response, body []byte) *Error {
	e := &Error{Status: resp.StatusCode}
	var j struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &j) == nil && j.Error != "" {
		e.Code, e.Message = j.Error, j.Message
	} else {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		e.Message = msg
	}
	return e
}

// readBody reads a 200's body, at most limit bytes.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	n := resp.ContentLength
	if n > limit {
		return nil, fmt.Errorf("client: message of %d bytes exceeds the client's limit of %d", n, limit)
	}
	var buf bytes.Buffer
	if n > 0 {
		buf.Grow(int(n))
	}
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1)); err != nil {
		return nil, fmt.Errorf("client: reading message: %w", err)
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("client: message exceeds the client's limit of %d bytes", limit)
	}
	return buf.Bytes(), nil
}

// drain reads what is left of a small body so the connection can be
// reused, and gives up on a large one.
func drain(r io.Reader) { _, _ = io.Copy(io.Discard, io.LimitReader(r, maxErrorBody)) }

func headerUint(h http.Header, key string) (uint64, bool) {
	v := h.Get(key)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil
}

// retryAfter reads a Retry-After header: whole seconds or an HTTP date;
// 0 when absent or unreadable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(min(s, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
