// Package guard holds zrc-rendezvous' abuse controls for the mailbox
// routes: the request's source address (Z3), the allow and block lists
// (R4.5, R4.6), per-source token buckets for POST and GET (R4.1–R4.4,
// R4.7), concurrent long-polls per source (max_waiting_per_source) and
// the four authentication modes (R5, Z4).
//
// It is not a middleware: a handler wrapping the GET route would add a
// stack frame under every parked long-poll, and a parked connection
// goroutine keeps the stack it grew to before the wait. httpapi calls
// Admit, then Ticket.Authorize and Ticket.Wait, from a function that
// returns before the wait, and Hold.Release after it.
//
// Everything an operator can reload lives in one immutable state that a
// reload replaces atomically (R5.6): a request keeps the state it was
// admitted under, and the token buckets, the replay cache and the
// waiting counts outlive reloads.
package guard

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/conf/rules"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/apierr"
)

// Kind is what a mailbox request does; each kind has its own bucket.
type Kind uint8

const (
	Post     Kind = iota // POST /v1/mailbox/{id}
	Get                  // GET /v1/mailbox/{id}
	NumKinds             // how many kinds there are
)

// kindNames are the kinds' names: the rate_limit_hits_total label and the
// 429's "limit".
var kindNames = [NumKinds]string{"post", "get"}

func (k Kind) String() string {
	if k < NumKinds {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Errors Admit, Authorize and Wait return; httpapi maps them to its error
// table (errors.Is).
var (
	ErrUnauthorized = errors.New("credentials required")      // 401
	ErrForbidden    = errors.New("credentials refused")       // 403 forbidden
	ErrBlocked      = errors.New("source address is blocked") // 403 blocked
	ErrRateLimited  = errors.New("rate limit exceeded")       // 429, as a *LimitError
)

// LimitError is a 429 (R4.4): which limit was hit, when to retry, and the
// JSON body that tells the client so.
type LimitError struct {
	// Kind is the request's kind (the rate_limit_hits_total label).
	Kind  Kind
	retry time.Duration
	body  []byte
}

func (e *LimitError) Error() string             { return "rate limit exceeded (" + e.Kind.String() + ")" }
func (e *LimitError) Is(target error) bool      { return target == ErrRateLimited }
func (e *LimitError) RetryAfter() time.Duration { return e.retry }

// Body is the response body: the usual error and message, plus "limit"
// (which limit: post, get, long_polls, sources, signature_nonces), "max"
// (its number) and, for the token buckets, "window_seconds".
func (e *LimitError) Body() []byte { return e.body }

// Options configure a Guard. cmd builds them from conf.Config. Now,
// Logger and NoncesPerSource are fixed by New; everything else a reload
// may change.
type Options struct {
	// PostsPerWindow and GetsPerWindow are each source's buckets: that
	// many requests, refilled continuously so that an empty bucket is full
	// again after Window (R4.1–R4.3, R4.7).
	PostsPerWindow, GetsPerWindow int
	Window                        time.Duration
	// IPv6Prefix is how many leading bits of an IPv6 address name its
	// source (R4.2); IPv4 sources are single addresses.
	IPv6Prefix int
	// MaxSources caps the tracked sources; a new one beyond is refused.
	MaxSources int
	// MaxWaitingPerSource caps a source's concurrent long-polls.
	MaxWaitingPerSource int
	// Allowlist sources skip every limit; Blocklist sources get 403
	// blocked; TrustedProxies peers have their X-Forwarded-For believed.
	// IPs and CIDRs, IPv4 and IPv6.
	Allowlist, Blocklist, TrustedProxies []string
	Mode                                 Mode
	// ServerTokens are auth_tokens, plain or "sha256:<hex>".
	ServerTokens []string
	// MailboxTokens are mailbox_tokens_file's contents; needed by
	// PerMailbox.
	MailboxTokens *MailboxTokens

	Now    func() time.Time // nil: time.Now
	Logger *zap.Logger      // nil: no logs
	// NoncesPerSource caps one source's share of the signature replay
	// cache; 0: defaultReplayPerSource. Tests set a small one.
	NoncesPerSource int
	// Shared, if set, holds the token buckets every node sees (shared.go);
	// OnSharedFallback is called for each request the local bucket decided
	// because it did not answer. Read by New; a reload keeps them.
	Shared           SharedBuckets
	OnSharedFallback func()
}

// state is one version of the reloadable options, prepared in full before
// it replaces the previous one. Read-only once published.
type state struct {
	gen         uint64
	limit       [NumKinds]rate.Limit
	burst       [NumKinds]int
	window      time.Duration
	v6bits      int
	maxSources  int
	maxWaiting  int32
	allow       prefixSet
	block       prefixSet
	trusted     prefixSet
	mode        Mode
	server      []digest
	mailbox     *MailboxTokens
	limitHV     [NumKinds][]string // RateLimit-Limit values
	limitBody   [NumKinds][]byte   // 429 bodies of the buckets
	waitingBody []byte
	sourcesBody []byte
}

// Guard checks mailbox requests. It is safe for concurrent use.
type Guard struct {
	st     atomic.Pointer[state]
	gen    atomic.Uint64
	lim    limiter
	replay *replayCache
	now    func() time.Time
	log    *zap.Logger
	// capWarned is when the last "at rate_limit_max_sources" warning was
	// logged (unix ns); one a minute at most.
	capWarned atomic.Int64

	sharedBuckets  SharedBuckets // nil: this node's buckets alone
	onFallback     func()
	fallbackWarned atomic.Int64 // unix ns of the last fallback warning
}

// New checks o and returns a Guard.
func New(o Options) (*Guard, error) {
	perSource := o.NoncesPerSource
	if perSource <= 0 {
		perSource = defaultReplayPerSource
	}
	g := &Guard{now: o.Now, log: o.Logger, replay: newReplayCache(maxReplayEntries, perSource),
		sharedBuckets: o.Shared, onFallback: o.OnSharedFallback}
	if g.now == nil {
		g.now = time.Now
	}
	if g.log == nil {
		g.log = zap.NewNop()
	}
	commit, err := g.Prepare(o)
	if err != nil {
		return nil, err
	}
	commit()
	return g, nil
}

// Prepare checks o and builds the state it describes without applying it;
// commit makes it the one new requests see (R5.6). Requests admitted
// before keep the previous state; buckets take the new numbers on their
// source's next request, keeping their tokens. Its shape is that of cmd's
// reload hooks.
func (g *Guard) Prepare(o Options) (commit func(), err error) {
	st, err := newState(o)
	if err != nil {
		return nil, err
	}
	return func() {
		st.gen = g.gen.Add(1)
		g.st.Store(st)
	}, nil
}

// Mode is the authentication mode in force.
func (g *Guard) Mode() Mode { return g.st.Load().mode }

// Tracked is the number of sources with a token bucket.
func (g *Guard) Tracked() int { return g.lim.tracked() }

func newState(o Options) (*state, error) {
	var problems []error
	bad := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }
	if o.PostsPerWindow < 1 || o.GetsPerWindow < 1 {
		bad("requests per window must be at least 1, got %d POST and %d GET", o.PostsPerWindow, o.GetsPerWindow)
	}
	if o.Window < time.Second {
		bad("rate limit window must be at least 1s, got %v", o.Window)
	}
	if o.IPv6Prefix < 1 || o.IPv6Prefix > rules.MaxIPv6Prefix {
		bad("IPv6 prefix must be 1 to 128 bits, got %d", o.IPv6Prefix)
	}
	if o.MaxSources < 1 {
		bad("max sources must be at least 1, got %d", o.MaxSources)
	}
	if o.MaxWaitingPerSource < 1 || o.MaxWaitingPerSource > rules.MaxWaitingPerSource {
		bad("max waiting per source must be 1 to 2^30, got %d", o.MaxWaitingPerSource)
	}
	st := &state{window: o.Window, v6bits: o.IPv6Prefix, maxSources: o.MaxSources,
		maxWaiting: int32(o.MaxWaitingPerSource), mode: o.Mode, mailbox: o.MailboxTokens}
	var err error
	if st.allow, err = parsePrefixSet("ip_allowlist", o.Allowlist); err != nil {
		problems = append(problems, err)
	}
	if st.block, err = parsePrefixSet("ip_blocklist", o.Blocklist); err != nil {
		problems = append(problems, err)
	}
	if st.trusted, err = parsePrefixSet("trusted_proxies", o.TrustedProxies); err != nil {
		problems = append(problems, err)
	}
	if st.server, err = parseTokens("auth_tokens", o.ServerTokens); err != nil {
		problems = append(problems, err)
	}
	switch o.Mode {
	case Disabled, Signature:
	case ServerWide:
		if len(o.ServerTokens) == 0 {
			bad("auth_mode server_wide needs at least one auth_tokens entry")
		}
	case PerMailbox:
		if o.MailboxTokens == nil {
			bad("auth_mode per_mailbox needs mailbox_tokens_file")
		}
	default:
		bad("unknown auth mode %v", o.Mode)
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	perWindow := [NumKinds]int{Post: o.PostsPerWindow, Get: o.GetsPerWindow}
	for k := range NumKinds {
		st.burst[k] = perWindow[k]
		st.limit[k] = rate.Limit(float64(perWindow[k]) / o.Window.Seconds())
		st.limitHV[k] = []string{strconv.Itoa(perWindow[k])}
		window := int64(o.Window / time.Second)
		st.limitBody[k] = apierr.LimitBody(
			fmt.Sprintf("rate limit exceeded: %d %s requests per %d seconds from this source", perWindow[k], kindNames[k], window),
			apierr.Limit{Name: kindNames[k], Max: perWindow[k], WindowSeconds: window})
	}
	st.waitingBody = apierr.LimitBody(fmt.Sprintf("too many waiting long-polls from this source (at most %d)", o.MaxWaitingPerSource),
		apierr.Limit{Name: "long_polls", Max: o.MaxWaitingPerSource})
	st.sourcesBody = apierr.LimitBody("the server tracks as many sources as it may; try again later",
		apierr.Limit{Name: "sources", Max: o.MaxSources})
	return st, nil
}

// Ticket is a request Admit let through, for the checks that need what
// the handler parses next. The zero Ticket (no Guard) passes them all.
type Ticket struct {
	g     *Guard
	st    *state
	b     *bucket // nil for an allowlisted source
	src   sourceKey
	kind  Kind
	quota Quota
}

// Quota is what an admitted request's RateLimit-* headers say. It is kept
// apart from the response until the answer: a long-poll that waited with
// them set would hold its header map's first allocation for the whole
// wait (docs/performance.md).
type Quota struct {
	limit            []string // nil: no quota (allowlisted source, no guard)
	remaining, reset int64
}

// Set writes the RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset
// headers (R4.4); nothing for a source without a quota.
func (q Quota) Set(h http.Header) {
	if q.limit == nil {
		return
	}
	h[hdrLimit] = q.limit
	h[hdrRemaining] = numHV(q.remaining)
	h[hdrReset] = numHV(q.reset)
}

// Quota is the admitted request's quota, for its answer's headers.
func (t Ticket) Quota() Quota { return t.quota }

// Canonical header keys and fixed values.
const (
	hdrLimit     = "Ratelimit-Limit"
	hdrRemaining = "Ratelimit-Remaining"
	hdrReset     = "Ratelimit-Reset"
	hdrChallenge = "Www-Authenticate"
)

var (
	hvBearer    = []string{"Bearer"}
	hvSignature = []string{"ZRC-Signature"}
)

// Admit finds the request's source (Z3) and applies the lists and the
// token bucket of kind k: ErrBlocked for a blocked source (R4.6), a
// *LimitError when the bucket is empty or the source cannot be tracked.
// Every admitted or limited request took a token, whatever its outcome
// later (R4.1–R4.3). A refused request's RateLimit-Limit,
// RateLimit-Remaining and RateLimit-Reset headers (seconds until the
// bucket is full again) are set on w at once; an admitted one's are in
// the Ticket's Quota, for the caller to set when it answers. Allowlisted
// and blocked sources have no quota. A nil Guard admits everything.
func (g *Guard) Admit(w http.ResponseWriter, r *http.Request, k Kind) (Ticket, error) {
	if g == nil {
		return Ticket{}, nil
	}
	st := g.st.Load()
	t := Ticket{g: g, st: st, kind: k}
	addr := clientAddr(r, st.trusted)
	if len(st.block) > 0 && st.block.contains(addr) {
		return t, ErrBlocked
	}
	t.src = keyOf(addr, st.v6bits)
	if len(st.allow) > 0 && st.allow.contains(addr) {
		return t, nil // R4.5: no rate limits
	}
	now := g.now()
	b, ok, tokens := g.lim.take(st, t.src, k, now)
	if b == nil {
		g.warnAtCap(now)
		retry := g.lim.retryAtCap(now)
		Quota{limit: st.limitHV[k], reset: apierr.CeilSeconds(retry)}.Set(w.Header())
		return t, &LimitError{Kind: k, retry: retry, body: st.sourcesBody}
	}
	t.b = b
	if g.sharedBuckets != nil {
		ok, tokens = g.shared(st, b, t.src, k, ok, tokens)
	}
	perSecond := float64(st.limit[k])
	t.quota = Quota{
		limit:     st.limitHV[k],
		remaining: int64(max(tokens, 0)),
		reset:     apierr.CeilSeconds(time.Duration((float64(st.burst[k]) - tokens) / perSecond * float64(time.Second))),
	}
	if !ok {
		t.quota.Set(w.Header())
		retry := time.Duration((1 - tokens) / perSecond * float64(time.Second))
		return t, &LimitError{Kind: k, retry: retry, body: st.limitBody[k]}
	}
	return t, nil
}

// ConnSource names the source whose max_connections_per_source a
// connection from TCP peer counts against: the peer's address, IPv6
// grouped by rate_limit_ipv6_prefix bits as the rate limits group it
// (R4.2). X-Forwarded-For cannot be read when a connection is accepted, so
// a trusted proxy's connections, each carrying clients of its own, are not
// capped (capped false), nor are an allowlisted peer's (R4.5: no limits)
// or those of a peer without an IP address. It follows reloads: the lists
// and the prefix in force at the accept decide.
func (g *Guard) ConnSource(peer netip.Addr) (key [16]byte, capped bool) {
	st := g.st.Load()
	peer = peer.WithZone("").Unmap()
	if !peer.IsValid() || st.trusted.contains(peer) || st.allow.contains(peer) {
		return key, false
	}
	return keyOf(peer, st.v6bits), true
}

// warnAtCap logs, at most once a minute, that new sources are refused.
func (g *Guard) warnAtCap(now time.Time) {
	last := g.capWarned.Load()
	if now.UnixNano()-last < int64(time.Minute) || !g.capWarned.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	g.log.Warn("rate_limit_max_sources reached: requests from new sources are refused (429) until tracked ones go idle",
		zap.Int("tracked", g.lim.tracked()))
}

// Authorize checks the request's credentials for mailbox id under the
// auth mode (R5): ErrUnauthorized with a WWW-Authenticate challenge when
// they are missing, ErrForbidden when they are wrong. A POST needs them
// only in server_wide mode.
func (t Ticket) Authorize(w http.ResponseWriter, r *http.Request, id actor.ID) error {
	st := t.st
	if st == nil {
		return nil
	}
	switch st.mode {
	case ServerWide:
		return bearer(w, r, st.server, nil)
	case PerMailbox:
		if t.kind == Get {
			return bearer(w, r, st.server, st.mailbox.byID[id])
		}
	case Signature:
		if t.kind == Get {
			return t.signature(w, r, id)
		}
	}
	return nil
}

// bearer checks the request's Bearer token against set and more.
func bearer(w http.ResponseWriter, r *http.Request, set, more []digest) error {
	tok, cred := bearerToken(r.Header["Authorization"])
	switch cred {
	case credMissing:
		w.Header()[hdrChallenge] = hvBearer // R5.2
		return ErrUnauthorized
	case credBad:
		return ErrForbidden
	}
	d := sha256Sum(tok)
	if !matchAny(&d, set, more) {
		return ErrForbidden // R5.3
	}
	return nil
}

// signature checks a signed GET (Z4).
func (t Ticket) signature(w http.ResponseWriter, r *http.Request, id actor.ID) error {
	now := t.g.now()
	switch res := t.g.replay.verify(r.Header, id, t.src, now); res {
	case sigOK:
		return nil
	case sigMissing:
		w.Header()[hdrChallenge] = hvSignature
		return ErrUnauthorized
	case sigCacheFull:
		return &LimitError{Kind: t.kind, retry: t.g.replay.retryAfter(res, t.src, now),
			body: apierr.LimitBody("the server holds as many signature nonces as it may; try again later",
				apierr.Limit{Name: "signature_nonces", Max: maxReplayEntries})}
	case sigSourceFull:
		return &LimitError{Kind: t.kind, retry: t.g.replay.retryAfter(res, t.src, now),
			body: apierr.LimitBody("this source holds as many signature nonces as it may; try again later",
				apierr.Limit{Name: "signature_nonces_per_source", Max: int(t.g.replay.perSource)})}
	}
	return ErrForbidden
}

// Hold is a waiting long-poll counted against its source; Release it
// once the GET's wait is over. The zero Hold releases nothing.
type Hold struct{ b *bucket }

// Wait counts a long-poll against its source's max_waiting_per_source: a
// *LimitError when the source has that many waiting already. Allowlisted
// sources are not counted.
func (t Ticket) Wait() (Hold, error) {
	if t.b == nil {
		return Hold{}, nil
	}
	if n := t.b.waiting.Add(1); n > t.st.maxWaiting {
		t.b.waiting.Add(-1)
		return Hold{}, &LimitError{Kind: t.kind, retry: time.Second, body: t.st.waitingBody}
	}
	return Hold{b: t.b}, nil
}

// Release ends the hold's count.
func (h Hold) Release() {
	if h.b != nil {
		h.b.waiting.Add(-1)
	}
}

// smallNums are the decimal strings of 0 to len-1, so that the RateLimit
// headers of every ordinary limit cost no allocation.
var smallNums = func() (a [1024]string) {
	for i := range a {
		a[i] = strconv.Itoa(i)
	}
	return a
}()

// numHV is n as a one-value header.
func numHV(n int64) []string {
	if n >= 0 && n < int64(len(smallNums)) {
		return smallNums[n : n+1 : n+1]
	}
	return []string{strconv.FormatInt(n, 10)}
}
