package httpapi

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/client"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/guard"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor"
)

// guardOptions are the spec's defaults (R4, R5), for tests to adjust.
func guardOptions() guard.Options {
	return guard.Options{PostsPerWindow: 60, GetsPerWindow: 120, Window: time.Minute, IPv6Prefix: 64,
		MaxSources: 100000, MaxWaitingPerSource: 100}
}

// guardedServer is a test server whose handler has a Guard on the same
// fake clock as its supervisor.
type guardedServer struct {
	*testServer
	guard *guard.Guard
}

func newGuardedServer(t testing.TB, o guard.Options, logger *zap.Logger) *guardedServer {
	t.Helper()
	clock := newFakeClock()
	o.Now = clock.Now
	g, err := guard.New(o)
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.sup.Now = clock.Now
	set := metrics.NewSet()
	sup := supervisor.New(cfg.sup)
	h := New(Deps{Mailboxes: sup, Logger: logger, Metrics: set, Guard: g, Options: cfg.api})
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = NewServer(h, context.Background(), ServerOptions{LongPollMax: cfg.api.LongPollMax})
	ts.Start()
	t.Cleanup(func() { sup.Close() })
	t.Cleanup(ts.Close)
	return &guardedServer{
		testServer: &testServer{t: t, url: ts.URL, client: ts.Client(), sup: sup, set: set, clock: clock},
		guard:      g,
	}
}

// as returns a request from client (through the trusted proxy 127.0.0.1,
// the test's own address) with extra header pairs.
func as(client, method, path string, kv ...string) req {
	h := http.Header{}
	if client != "" {
		h.Set("X-Forwarded-For", client)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return req{method: method, path: path, header: h}
}

func postAs(client, id string, kv ...string) req {
	r := as(client, http.MethodPost, mailboxPath(id), kv...)
	r.body = []byte("envelope")
	return r
}

func getAs(client, id string, kv ...string) req {
	return as(client, http.MethodGet, mailboxPath(id)+"?wait_ms=0", kv...)
}

// wantLimited checks a 429 naming its limit (R4.4).
func wantLimited(t testing.TB, r result, retryAfter, limit string, max int, window int) {
	t.Helper()
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("status %d (%s); want 429", r.status, r.body)
	}
	wantHeader(t, r.header, map[string]string{"Retry-After": retryAfter, "Content-Type": "application/json"})
	var body struct {
		Error, Message, Limit string
		Max                   int
		WindowSeconds         int `json:"window_seconds"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	if body.Error != "rate_limited" || body.Message == "" || body.Limit != limit || body.Max != max || body.WindowSeconds != window {
		t.Errorf("body %s; want rate_limited naming %s, max %d, window %d", r.body, limit, max, window)
	}
}

func wantQuota(t testing.TB, r result, limit, remaining, reset string) {
	t.Helper()
	wantHeader(t, r.header, map[string]string{"RateLimit-Limit": limit, "RateLimit-Remaining": remaining, "RateLimit-Reset": reset})
}

// A long-poll's quota headers come with its answer after the wait (they
// are kept out of the response while it waits), and say what Admit saw.
func TestRateLimitHeadersAfterWait(t *testing.T) {
	o := guardOptions()
	o.PostsPerWindow, o.GetsPerWindow = 3, 2
	s := newGuardedServer(t, o, nil)
	id := rid("waits")
	got := s.goGet(context.Background(), id, "?wait_ms=10000")
	s.waitParked(1)
	wantAccepted(t, s.post(id, "late"), seq0, 0)
	r := receive(t, got)
	wantMessage(t, r, "late", seq0, 0)
	wantQuota(t, r, "2", "1", "30")
}

// R4.1–R4.4, R4.7: separate buckets per kind, every outcome takes a
// token, 429 with Retry-After until the next token, refill over time.
func TestRateLimitPerKind(t *testing.T) {
	o := guardOptions()
	o.PostsPerWindow, o.GetsPerWindow = 3, 2
	s := newGuardedServer(t, o, nil)
	id := rid("limits")

	wantQuota(t, s.post(id, "a"), "3", "2", "20")
	wantQuota(t, s.do(req{method: http.MethodPost, path: mailboxPath("nothex")}), "3", "1", "40") // a 400 takes a token
	r := s.post(id, "b")
	wantQuota(t, r, "3", "0", "60")
	r = s.post(id, "c")
	wantLimited(t, r, "20", "post", 3, 60)
	wantQuota(t, r, "3", "0", "60")

	// GET has its own bucket.
	wantMessage(t, s.get(id, "?wait_ms=0"), "a", seq0, 1)
	wantQuota(t, s.get(id, "?wait_ms=bad"), "2", "0", "60")
	wantLimited(t, s.get(id, "?wait_ms=0"), "30", "get", 2, 60)

	s.clock.Advance(19 * time.Second)
	wantLimited(t, s.post(id, "c"), "1", "post", 3, 60) // 0.95 tokens: under a second to go
	s.clock.Advance(time.Second)
	wantAccepted(t, s.post(id, "c"), seq0+2, 2)
	s.clock.Advance(time.Hour) // full again, never more than full
	for range 3 {
		if r := s.post(id, "d"); r.status != http.StatusAccepted {
			t.Fatalf("after a long pause: %d; want 202 (full bucket)", r.status)
		}
	}
}

// The bucket refills continuously; Retry-After rounds up, never below 1.
func TestRetryAfterWithFakeClock(t *testing.T) {
	o := guardOptions()
	o.GetsPerWindow, o.Window = 4, 60*time.Second // a token every 15 s
	s := newGuardedServer(t, o, nil)
	id := rid("retry")
	for range 4 {
		wantNoContent(t, s.get(id, "?wait_ms=0"))
	}
	for _, tt := range []struct {
		advance time.Duration
		want    string
	}{
		{0, "15"},
		{100 * time.Millisecond, "15"}, // 14.9 s rounds up
		{9 * time.Second, "6"},
		{5800 * time.Millisecond, "1"}, // 0.1 s left: at least 1
	} {
		s.clock.Advance(tt.advance)
		wantLimited(t, s.get(id, "?wait_ms=0"), tt.want, "get", 4, 60)
	}
	s.clock.Advance(200 * time.Millisecond)
	wantNoContent(t, s.get(id, "?wait_ms=0"))
	if got := counterValue(t, s.set, `zrc_rendezvous_rate_limit_hits_total{kind="get"}`); got != 4 {
		t.Errorf("get hits %v; want 4", got)
	}
	if got := counterValue(t, s.set, `zrc_rendezvous_rate_limit_hits_total{kind="post"}`); got != 0 {
		t.Errorf("post hits %v; want 0", got)
	}
}

// counterValue reads one series from the set.
func counterValue(t testing.TB, set *metrics.Set, series string) float64 {
	t.Helper()
	var b strings.Builder
	set.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}

// R4.5, R4.6: allow and block lists with IPs and CIDRs, v4 and v6.
func TestAllowAndBlockLists(t *testing.T) {
	o := guardOptions()
	o.PostsPerWindow, o.GetsPerWindow = 1, 1
	o.TrustedProxies = []string{"127.0.0.1"}
	o.Allowlist = []string{"198.51.100.7", "2001:db8:a11::/48"}
	o.Blocklist = []string{"203.0.113.0/24", "2001:db8:bad::/48", "192.0.2.66"}
	s := newGuardedServer(t, o, nil)
	id := rid("lists")
	tests := []struct {
		client string
		want   string // allowed, blocked, limited (after one request)
	}{
		{"198.51.100.7", "allowed"},
		{"2001:db8:a11:5::1", "allowed"},
		{"203.0.113.200", "blocked"},
		{"2001:db8:bad:1::9", "blocked"},
		{"192.0.2.66", "blocked"},
		{"192.0.2.67", "limited"},
		{"198.51.100.8", "limited"},
		{"2001:db8:a12::1", "limited"},
	}
	for _, tt := range tests {
		t.Run(tt.client, func(t *testing.T) {
			for i := range 3 {
				for _, r := range []req{postAs(tt.client, id), getAs(tt.client, id)} {
					res := s.do(r)
					switch {
					case tt.want == "blocked":
						wantError(t, res, http.StatusForbidden, "blocked")
						wantQuota(t, res, "", "", "")
					case tt.want == "allowed":
						if res.status >= 400 {
							t.Fatalf("%s %d: %d %s", r.method, i, res.status, res.body)
						}
						wantQuota(t, res, "", "", "") // no quota to report
					case i == 0:
						if res.status >= 400 {
							t.Fatalf("%s first: %d %s", r.method, res.status, res.body)
						}
					default:
						if res.status != http.StatusTooManyRequests {
							t.Fatalf("%s %d: %d; want 429", r.method, i, res.status)
						}
					}
				}
			}
		})
	}
}

// Z3: X-Forwarded-For is believed only from a trusted proxy.
func TestForwardedForOnlyFromTrustedProxies(t *testing.T) {
	o := guardOptions()
	o.PostsPerWindow = 10
	o.Blocklist = []string{"203.0.113.5"}
	o.TrustedProxies = []string{"10.0.0.0/8"} // not the test's 127.0.0.1
	s := newGuardedServer(t, o, nil)
	id := rid("xff")
	// Spoofed headers from an untrusted peer: ignored, so neither the
	// blocklisted address nor fresh addresses change anything; every
	// request counts against 127.0.0.1.
	for i, spoof := range []string{"203.0.113.5", "198.51.100.1", "198.51.100.2, 10.0.0.1"} {
		r := s.do(postAs(spoof, id))
		if r.status != http.StatusAccepted {
			t.Fatalf("spoofed %q: %d %s", spoof, r.status, r.body)
		}
		wantQuota(t, r, "10", strconv.Itoa(9-i), strconv.Itoa(6*(i+1)))
	}

	o.TrustedProxies = []string{"127.0.0.0/8", "10.0.0.0/8"}
	s = newGuardedServer(t, o, nil)
	tests := []struct {
		name, xff string
		source    string // whose bucket: "peer", or the client address
	}{
		{"client", "198.51.100.1", "198.51.100.1"},
		{"rightmost untrusted", "198.51.100.9, 198.51.100.2, 10.1.1.1", "198.51.100.2"},
		{"all trusted: leftmost", "10.0.0.9, 10.0.0.8", "10.0.0.9"},
		{"malformed: the peer", "198.51.100.3:8080", "peer"},
		{"missing: the peer", "", "peer"},
	}
	used := map[string]int{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			used[tt.source]++
			r := s.do(postAs(tt.xff, id))
			wantQuota(t, r, "10", strconv.Itoa(10-used[tt.source]), strconv.Itoa(6*used[tt.source]))
		})
	}
	wantError(t, s.do(postAs("203.0.113.5, 10.0.0.1", id)), http.StatusForbidden, "blocked")
}

// R4.2: IPv6 sources share a bucket per /64 (configurable); IPv4 per address.
func TestIPv6SourcesGroupedByPrefix(t *testing.T) {
	for _, tt := range []struct {
		bits        int
		same, other string // the other address shares the first's bucket or not
		shared      bool
	}{
		{64, "2001:db8:0:1::1", "2001:db8:0:1:ffff::2", true},
		{64, "2001:db8:0:1::1", "2001:db8:0:2::1", false},
		{48, "2001:db8:0:1::1", "2001:db8:0:2::1", true},
		{128, "2001:db8::1", "2001:db8::2", false},
		{64, "192.0.2.1", "192.0.2.2", false},
	} {
		t.Run(fmt.Sprintf("/%d %s %s", tt.bits, tt.same, tt.other), func(t *testing.T) {
			o := guardOptions()
			o.IPv6Prefix = tt.bits
			o.PostsPerWindow = 1
			o.TrustedProxies = []string{"127.0.0.1"}
			s := newGuardedServer(t, o, nil)
			wantAccepted(t, s.do(postAs(tt.same, rid("v6"))), seq0, 1)
			got := s.do(postAs(tt.other, rid("v6"))).status == http.StatusTooManyRequests
			if got != tt.shared {
				t.Fatalf("second address limited: %v; want %v", got, tt.shared)
			}
		})
	}
}

// The limiter tracks at most MaxSources; a new source beyond gets 429.
func TestSourceCapRefusesNewSources(t *testing.T) {
	o := guardOptions()
	o.MaxSources = 2
	o.TrustedProxies = []string{"127.0.0.1"}
	s := newGuardedServer(t, o, nil)
	id := rid("cap")
	s.do(postAs("192.0.2.1", id))
	s.do(postAs("192.0.2.2", id))
	r := s.do(postAs("192.0.2.3", id))
	wantLimited(t, r, "60", "sources", 2, 0)
	wantQuota(t, r, "60", "0", "60")
	wantAccepted(t, s.do(postAs("192.0.2.1", id)), seq0+2, 3) // tracked sources go on
	s.clock.Advance(time.Minute + time.Second)
	if r := s.do(postAs("192.0.2.3", id)); r.status != http.StatusAccepted {
		t.Fatalf("after the others went idle: %d %s", r.status, r.body)
	}
}

// max_waiting_per_source caps concurrent long-polls; the count ends when
// a long-poll is answered.
func TestMaxWaitingPerSource(t *testing.T) {
	o := guardOptions()
	o.MaxWaitingPerSource = 2
	s := newGuardedServer(t, o, nil)
	id := rid("waiting")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := s.goGet(ctx, id, "?wait_ms=10000")
	s.waitParked(1)
	second := s.goGet(ctx, id, "?wait_ms=10000")
	s.waitParked(2)
	wantLimited(t, s.get(id, "?wait_ms=10000"), "1", "long_polls", 2, 0)
	wantNoContent(t, s.get(id, "?wait_ms=0")) // no wait, no count

	wantAccepted(t, s.post(id, "one"), seq0, 0)
	wantMessage(t, receive(t, first), "one", seq0, 0)
	third := s.goGet(ctx, id, "?wait_ms=10000") // a slot is free again
	s.waitParked(2)
	wantAccepted(t, s.post(id, "two"), seq0+1, 0)
	wantAccepted(t, s.post(id, "three"), seq0+2, 0)
	wantMessage(t, receive(t, second), "two", seq0+1, 0)
	wantMessage(t, receive(t, third), "three", seq0+2, 0)
}

// /health and /metrics are never limited, blocked or authenticated.
func TestHealthAndMetricsUnguarded(t *testing.T) {
	o := guardOptions()
	o.PostsPerWindow, o.GetsPerWindow = 1, 1
	o.Blocklist = []string{"127.0.0.1"}
	o.Mode, o.ServerTokens = guard.ServerWide, []string{"tok"}
	s := newGuardedServer(t, o, nil)
	for range 3 {
		for _, path := range []string{"/health", "/metrics"} {
			if r := s.do(req{method: http.MethodGet, path: path}); r.status != http.StatusOK {
				t.Fatalf("%s: %d", path, r.status)
			}
		}
	}
	wantError(t, s.get(rid("x"), "?wait_ms=0"), http.StatusForbidden, "blocked")
}

const serverToken = "server-token-0123456789"

// R5.5: server_wide — every mailbox request needs a server token.
func TestAuthServerWide(t *testing.T) {
	o := guardOptions()
	sum := sha256.Sum256([]byte("hashed-token"))
	o.Mode, o.ServerTokens = guard.ServerWide, []string{serverToken, "sha256:" + hex.EncodeToString(sum[:])}
	core, logs := observer.New(zap.DebugLevel)
	s := newGuardedServer(t, o, zap.New(core))
	id := rid("server-wide")
	for _, tt := range []struct {
		name   string
		auth   []string
		status int
		code   string
	}{
		{"missing", nil, 401, "unauthorized"},
		{"other scheme", []string{"Basic dTpw"}, 401, "unauthorized"},
		{"wrong", []string{"Bearer nope"}, 403, "forbidden"},
		{"prefix of the token", []string{"Bearer " + serverToken[:10]}, 403, "forbidden"},
		{"two headers", []string{"Bearer " + serverToken, "Bearer x"}, 403, "forbidden"},
		{"plain token", []string{"Bearer " + serverToken}, 0, ""},
		{"hashed token", []string{"bearer hashed-token"}, 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var kv []string
			for _, a := range tt.auth {
				kv = append(kv, "Authorization", a)
			}
			for _, r := range []req{postAs("", id, kv...), getAs("", id, kv...)} {
				res := s.do(r)
				if tt.status == 0 {
					if res.status >= 400 {
						t.Fatalf("%s: %d %s", r.method, res.status, res.body)
					}
					continue
				}
				wantError(t, res, tt.status, tt.code)
				challenge := ""
				if tt.status == 401 {
					challenge = "Bearer"
				}
				wantHeader(t, res.header, map[string]string{"WWW-Authenticate": challenge})
			}
		})
	}
	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(line, serverToken) || strings.Contains(line, "hashed-token") || strings.Contains(line, id) {
			t.Errorf("log line carries a token or a full id: %s", line)
		}
	}
}

// R5.4: per_mailbox — a GET needs a token of its mailbox or a server
// token; POST stays open.
func TestAuthPerMailbox(t *testing.T) {
	a, b := rid("alice"), rid("bob")
	mt, err := guard.ParseMailboxTokens([]byte("[mailboxes]\n" +
		strings.ToUpper(a) + " = [\"alice-token\", \"alice-next\"]\n" + b + " = [\"bob-token\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := guardOptions()
	o.Mode, o.ServerTokens, o.MailboxTokens = guard.PerMailbox, []string{serverToken}, mt
	s := newGuardedServer(t, o, nil)
	wantAccepted(t, s.do(postAs("", a)), seq0, 1) // no token needed to send
	for _, tt := range []struct {
		name   string
		id     string
		auth   string
		status int
	}{
		{"missing", a, "", 401},
		{"other mailbox's token", a, "Bearer bob-token", 403},
		{"unknown", a, "Bearer guess", 403},
		{"mailbox without tokens", rid("carol"), "Bearer alice-token", 403},
		{"own token", a, "Bearer alice-token", 200},
		{"second own token, upper-case id", strings.ToUpper(a), "Bearer alice-next", 204},
		{"server token", b, "Bearer " + serverToken, 204},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var kv []string
			if tt.auth != "" {
				kv = []string{"Authorization", tt.auth}
			}
			r := s.do(getAs("", tt.id, kv...))
			switch tt.status {
			case 401:
				wantError(t, r, 401, "unauthorized")
				wantHeader(t, r.header, map[string]string{"WWW-Authenticate": "Bearer"})
			case 403:
				wantError(t, r, 403, "forbidden")
			default:
				if r.status != tt.status {
					t.Fatalf("status %d %s; want %d", r.status, r.body, tt.status)
				}
			}
		})
	}
}

// signer signs GETs for one key.
type signer struct {
	key ed25519.PrivateKey
	id  string
	n   byte
}

func newSigner(seed byte) *signer {
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	k := ed25519.NewKeyFromSeed(s)
	return &signer{key: k, id: client.MailboxID(k.Public().(ed25519.PublicKey))}
}

// headers signs a GET at at with a fresh nonce.
func (s *signer) headers(t testing.TB, at time.Time) []string {
	t.Helper()
	s.n++
	sg, err := client.SignGet(s.key, at, []byte{s.n, 1, 2, 3, 4, 5, 6, 7})
	if err != nil {
		t.Fatal(err)
	}
	return []string{client.HeaderKey, sg.Key, client.HeaderTimestamp, sg.Timestamp, client.HeaderNonce, sg.Nonce, client.HeaderSignature, sg.Signature}
}

// Z4: signature — a GET proves possession of the mailbox's key, once per
// nonce, within ±60 s; a refused GET consumes nothing; POST stays open.
func TestAuthSignature(t *testing.T) {
	o := guardOptions()
	o.Mode = guard.Signature
	s := newGuardedServer(t, o, nil)
	alice, mallory := newSigner(1), newSigner(2)
	wantAccepted(t, s.do(postAs("", alice.id)), seq0, 1)

	now := s.clock.Now()
	tamper := func(h []string, i int, v string) []string {
		h = append([]string(nil), h...)
		h[i] = v
		return h
	}
	fresh := alice.headers(t, now)
	for _, tt := range []struct {
		name    string
		headers []string
		status  int
	}{
		{"no headers", nil, 401},
		{"no signature", fresh[:6], 401},
		{"another key's signature", mallory.headers(t, now), 403},
		{"stale timestamp", alice.headers(t, now.Add(-61*time.Second)), 403},
		{"future timestamp", alice.headers(t, now.Add(61*time.Second)), 403},
		{"tampered nonce", tamper(fresh, 5, "00000000000000000000"), 403},
		{"tampered signature", tamper(fresh, 7, strings.Repeat("0", 128)), 403},
		{"malformed key", tamper(fresh, 1, "abc"), 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := s.do(getAs("", alice.id, tt.headers...))
			if tt.status == 401 {
				wantError(t, r, 401, "unauthorized")
				wantHeader(t, r.header, map[string]string{"WWW-Authenticate": "ZRC-Signature"})
			} else {
				wantError(t, r, 403, "forbidden")
			}
			if n := s.sup.Snapshot().Messages; n != 1 {
				t.Fatalf("%d messages queued after a refused GET; want 1 (nothing consumed)", n)
			}
		})
	}
	wantNoContent(t, s.do(getAs("", mallory.id, mallory.headers(t, now)...))) // her own, empty mailbox

	// A signature 59 s old, the id upper case in the URL: accepted once.
	valid := alice.headers(t, now.Add(-59*time.Second))
	wantMessage(t, s.do(getAs("", strings.ToUpper(alice.id), valid...)), "envelope", seq0, 0)
	wantError(t, s.do(getAs("", alice.id, valid...)), 403, "forbidden") // replay
	s.clock.Advance(30 * time.Second)
	wantError(t, s.do(getAs("", alice.id, valid...)), 403, "forbidden") // and now stale too
}

// Z4: one source signing GETs for its own key as fast as it may fills only
// its share of the replay cache: it gets 429 while another source's signed
// GET is still served.
func TestSignatureNoncesPerSource(t *testing.T) {
	o := guardOptions()
	o.Mode, o.TrustedProxies, o.NoncesPerSource = guard.Signature, []string{"127.0.0.1"}, 3
	s := newGuardedServer(t, o, nil)
	alice, mallory := newSigner(1), newSigner(2)
	wantAccepted(t, s.do(postAs("", alice.id)), seq0, 1)
	now := s.clock.Now()
	for range 3 {
		wantNoContent(t, s.do(getAs("198.51.100.66", mallory.id, mallory.headers(t, now)...)))
	}
	s.clock.Advance(5 * time.Second)
	r := s.do(getAs("198.51.100.66", mallory.id, mallory.headers(t, s.clock.Now())...))
	wantLimited(t, r, "56", "signature_nonces_per_source", 3, 0) // the first of hers goes stale in 56 s
	// The same source with another key is refused too; another source is not.
	wantLimited(t, s.do(getAs("198.51.100.66", alice.id, alice.headers(t, s.clock.Now())...)),
		"56", "signature_nonces_per_source", 3, 0)
	wantMessage(t, s.do(getAs("198.51.100.7", alice.id, alice.headers(t, s.clock.Now())...)), "envelope", seq0, 0)
	// Once her entries are stale, she gets in again.
	s.clock.Advance(56 * time.Second)
	wantNoContent(t, s.do(getAs("198.51.100.66", mallory.id, mallory.headers(t, s.clock.Now())...)))
}

// R5.6: a reload swaps tokens, lists and numbers at once, and a long-poll
// parked across it still receives its message.
func TestReloadKeepsWaitingLongPoll(t *testing.T) {
	o := guardOptions()
	o.Mode, o.ServerTokens = guard.ServerWide, []string{"old-token"}
	s := newGuardedServer(t, o, nil)
	id := rid("reload")
	waiting := make(chan result, 1)
	go func() {
		waiting <- s.try(as("", http.MethodGet, mailboxPath(id)+"?wait_ms=10000", "Authorization", "Bearer old-token"))
	}()
	s.waitParked(1)

	o.ServerTokens = []string{"new-token"}
	o.PostsPerWindow = 5
	commit, err := s.guard.Prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.do(postAs("", id, "Authorization", "Bearer new-token")); r.status != http.StatusUnauthorized && r.status != http.StatusForbidden {
		t.Fatalf("new token before the commit: %d; want refused", r.status)
	}
	commit()
	wantError(t, s.do(postAs("", id, "Authorization", "Bearer old-token")), 403, "forbidden")
	r := s.do(postAs("", id, "Authorization", "Bearer new-token"))
	wantAccepted(t, r, seq0, 0)
	wantQuota(t, r, "5", "3", "24") // the bucket carried over to 5, capped
	wantMessage(t, receive(t, waiting), "envelope", seq0, 0)
}

// BenchmarkHandlerGuard is BenchmarkHandlerPostGet/reused (one POST and
// one GET through the handler, request and writer reused) without and
// with the default abuse controls, so that the difference is what the
// chain adds to a real request in the allowed case. The guard's clock
// moves a second per request, so the buckets never run dry.
func BenchmarkHandlerGuard(b *testing.B) {
	s := newTestServer(b)
	payload := []byte(strings.Repeat("e", 256))
	for _, withGuard := range []bool{false, true} {
		name := "none"
		var g *guard.Guard
		if withGuard {
			name = "defaults"
			o := guardOptions()
			now := time.Now()
			o.Now = func() time.Time { now = now.Add(time.Second); return now }
			var err error
			if g, err = guard.New(o); err != nil {
				b.Fatal(err)
			}
		}
		h := New(Deps{Mailboxes: s.sup, Metrics: metrics.NewSet(), Guard: g, Options: defaultConfig().api})
		id := rid("bench-" + name)
		b.Run(name, func(b *testing.B) { benchReusedPostGet(b, h, id, payload) })
	}
}
