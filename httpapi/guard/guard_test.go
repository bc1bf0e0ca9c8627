package guard

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/client"
)

// clock is an injected Now that tests move by hand.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func defaults() Options {
	return Options{PostsPerWindow: 60, GetsPerWindow: 120, Window: time.Minute, IPv6Prefix: 64,
		MaxSources: 100000, MaxWaitingPerSource: 100}
}

func newGuard(t testing.TB, mod func(*Options)) (*Guard, *clock) {
	t.Helper()
	c := &clock{t: time.Unix(1700000000, 0)}
	o := defaults()
	o.Now = c.Now
	if mod != nil {
		mod(&o)
	}
	g, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return g, c
}

func request(method, peer string) *http.Request {
	r := httptest.NewRequest(method, "/v1/mailbox/"+ridA, nil)
	r.RemoteAddr = peer
	return r
}

func TestNewRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Options)
	}{
		{"zero posts", func(o *Options) { o.PostsPerWindow = 0 }},
		{"short window", func(o *Options) { o.Window = time.Millisecond }},
		{"prefix", func(o *Options) { o.IPv6Prefix = 129 }},
		{"sources", func(o *Options) { o.MaxSources = 0 }},
		{"waiting", func(o *Options) { o.MaxWaitingPerSource = 0 }},
		{"list", func(o *Options) { o.Blocklist = []string{"nope"} }},
		{"token", func(o *Options) { o.ServerTokens = []string{"sha256:12"} }},
		{"server_wide without tokens", func(o *Options) { o.Mode = ServerWide }},
		{"per_mailbox without file", func(o *Options) { o.Mode = PerMailbox }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := defaults()
			tt.mod(&o)
			if _, err := New(o); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// The source table stays at MaxSources: a new source beyond is refused
// with a Retry-After until the least recently used source goes idle.
func TestSourceCap(t *testing.T) {
	g, c := newGuard(t, func(o *Options) { o.MaxSources = 2 })
	admit := func(peer string) error {
		_, err := g.Admit(httptest.NewRecorder(), request("POST", peer), Post)
		return err
	}
	if admit("192.0.2.1:1") != nil || admit("192.0.2.2:1") != nil {
		t.Fatal("first two sources refused")
	}
	c.Advance(10 * time.Second)
	var le *LimitError
	if err := admit("192.0.2.3:1"); !errors.As(err, &le) || le.RetryAfter() != 50*time.Second {
		t.Fatalf("third source: %v; want a LimitError with Retry-After 50s", err)
	}
	if admit("192.0.2.1:2") != nil {
		t.Fatal("a tracked source was refused at the cap")
	}
	c.Advance(50 * time.Second) // 192.0.2.2 is idle now; .1 is not
	c.Advance(fullSweepEvery)
	if err := admit("192.0.2.3:1"); err != nil {
		t.Fatalf("after a window: %v", err)
	}
	if g.Tracked() != 2 {
		t.Fatalf("tracking %d sources; want 2", g.Tracked())
	}
}

// Idle buckets are dropped by the shard's own sweep, so memory follows
// the active sources.
func TestIdleBucketsDropped(t *testing.T) {
	g, c := newGuard(t, nil)
	for i := range 200 {
		g.Admit(httptest.NewRecorder(), request("GET", "192.0.2."+strconv.Itoa(i)+":1"), Get)
	}
	if g.Tracked() != 200 {
		t.Fatalf("tracking %d; want 200", g.Tracked())
	}
	c.Advance(2 * time.Minute)
	for i := range 200 { // one request per source, which sweeps its shard first
		g.Admit(httptest.NewRecorder(), request("GET", "198.51.100."+strconv.Itoa(i)+":1"), Get)
	}
	if g.Tracked() != 200 {
		t.Fatalf("tracking %d after the old sources went idle; want 200", g.Tracked())
	}
}

// A reload carries each bucket over to the new numbers, tokens capped.
func TestReloadCarriesBuckets(t *testing.T) {
	g, _ := newGuard(t, func(o *Options) { o.PostsPerWindow = 10 })
	for range 4 {
		g.Admit(httptest.NewRecorder(), request("POST", "192.0.2.1:1"), Post)
	}
	o := defaults()
	o.PostsPerWindow = 3
	commit, err := g.Prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	commit()
	w := httptest.NewRecorder()
	tk, err := g.Admit(w, request("POST", "192.0.2.1:1"), Post)
	if err != nil {
		t.Fatal(err)
	}
	tk.Quota().Set(w.Header())
	if got := w.Header().Get("RateLimit-Limit") + "/" + w.Header().Get("RateLimit-Remaining"); got != "3/2" {
		t.Fatalf("limit/remaining %s after the reload; want 3/2 (6 tokens capped at 3, one taken)", got)
	}
}

// The vectors in docs/ verify on the server side, once each.
func TestSignatureVectorsVerify(t *testing.T) {
	b, err := os.ReadFile("../../docs/signature-test-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Vectors []struct {
			PublicKey   string `json:"public_key"`
			RecipientID string `json:"recipient_id"`
			Timestamp   string `json:"timestamp"`
			Nonce       string `json:"nonce"`
			Signature   string `json:"signature"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(b, &f); err != nil || len(f.Vectors) == 0 {
		t.Fatalf("vectors: %v", err)
	}
	c := newReplayCache(10, 10)
	for _, v := range f.Vectors {
		id, _ := actor.ParseID(v.RecipientID)
		ts, _ := strconv.ParseInt(v.Timestamp, 10, 64)
		h := http.Header{hdrKey: {v.PublicKey}, hdrTimestamp: {v.Timestamp}, hdrNonce: {v.Nonce}, hdrSignature: {v.Signature}}
		if got := c.verify(h, id, sourceKey{}, time.Unix(ts+59, 0)); got != sigOK {
			t.Fatalf("vector %s: %v; want ok", v.Nonce, got)
		}
		if got := c.verify(h, id, sourceKey{}, time.Unix(ts+59, 0)); got != sigReplayed {
			t.Fatalf("vector %s again: %v; want replayed", v.Nonce, got)
		}
	}
}

// The replay cache is bounded as a whole and per source: a source at its
// share is refused while others still get in, until its entries expire.
func TestReplayCacheBounded(t *testing.T) {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub := key.Public().(ed25519.PublicKey)
	id := actor.ID(sha256.Sum256(pub))
	c := newReplayCache(5, 3)
	a, b := sourceKey{1}, sourceKey{2}
	now := time.Unix(1700000000, 0)
	sign := func(nonce byte, at time.Time) http.Header {
		s, err := client.SignGet(key, at, []byte{nonce, 1, 2, 3, 4, 5, 6, 7})
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		s.Apply(h)
		return h
	}
	for n := range byte(3) {
		if got := c.verify(sign(n, now), id, a, now); got != sigOK {
			t.Fatalf("nonce %d: %v", n, got)
		}
	}
	if got := c.verify(sign(3, now.Add(time.Second)), id, a, now.Add(time.Second)); got != sigSourceFull {
		t.Fatalf("a fourth nonce from a source at its share: %v; want source full", got)
	}
	if ra := c.retryAfter(sigSourceFull, a, now); ra != 61*time.Second {
		t.Fatalf("retry after %v; want 61s", ra)
	}
	for n := byte(4); n < 6; n++ {
		at := now.Add(10 * time.Second)
		if got := c.verify(sign(n, at), id, b, at); got != sigOK {
			t.Fatalf("nonce %d from another source: %v; want ok", n, got)
		}
	}
	if got := c.verify(sign(9, now), id, b, now); got != sigCacheFull {
		t.Fatalf("a sixth nonce with the cache full: %v; want full", got)
	}
	if ra := c.retryAfter(sigCacheFull, b, now); ra != 61*time.Second {
		t.Fatalf("retry after %v; want 61s", ra)
	}
	later := now.Add(61 * time.Second)
	if got := c.verify(sign(9, later), id, a, later); got != sigOK {
		t.Fatalf("after the first entries expired: %v", got)
	}
	if len(c.seen) != 3 || len(c.sources) != 2 || c.sources[a].n != 1 || c.sources[b].n != 2 {
		t.Fatalf("after the sweep: %d entries, %d sources; want 3 entries, a 1, b 2", len(c.seen), len(c.sources))
	}
	// The nonce's case does not make a new pair.
	h := sign(10, later)
	if c.verify(h, id, a, later) != sigOK {
		t.Fatal("fresh nonce refused")
	}
	s, _ := client.SignGet(key, later, []byte{10, 1, 2, 3, 4, 5, 6, 7})
	upper := http.Header{}
	s.Nonce = "0A01020304050607"
	s.Signature = hex.EncodeToString(ed25519.Sign(key, client.SignedString(id.String(), s.Timestamp, s.Nonce)))
	s.Apply(upper)
	if got := c.verify(upper, id, a, later); got != sigReplayed {
		t.Fatalf("same nonce in upper case: %v; want replayed", got)
	}
}

// BenchmarkChain is the cost the abuse controls add to a mailbox request
// in the allowed case: Admit (source, lists, bucket, RateLimit headers)
// and Authorize, on a reused ResponseWriter so that only the chain's own
// allocations count. docs/performance.md ("Abuse controls") has figures.
func BenchmarkChain(b *testing.B) {
	token := "0123456789abcdef0123456789abcdef"
	mt, err := ParseMailboxTokens([]byte("[mailboxes]\n" + ridA + " = [\"" + token + "\"]\n"))
	if err != nil {
		b.Fatal(err)
	}
	id, _ := actor.ParseID(ridA)
	cases := []struct {
		name string
		mod  func(*Options)
		kind Kind
		auth string
	}{
		{"defaults/post", nil, Post, ""},
		{"defaults/get", nil, Get, ""},
		{"allowlisted/get", func(o *Options) { o.Allowlist = []string{"192.0.2.0/24"} }, Get, ""},
		{"xff/get", func(o *Options) { o.TrustedProxies = []string{"192.0.2.0/24"} }, Get, ""},
		{"server_wide/get", func(o *Options) { o.Mode, o.ServerTokens = ServerWide, []string{token} }, Get, "Bearer " + token},
		{"per_mailbox/get", func(o *Options) { o.Mode, o.MailboxTokens = PerMailbox, mt }, Get, "Bearer " + token},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			g, c := newGuard(b, bc.mod)
			// The default limits, and a clock that moves one token's worth
			// per request (at 120 GET a minute, 0.5 s), so the bucket never
			// runs dry and the headers carry ordinary numbers.
			step := time.Minute / 120
			if bc.kind == Post {
				step = time.Minute / 60
			}
			g.now = func() time.Time { c.Advance(step); return c.t }
			r := request(http.MethodGet, "192.0.2.1:4000")
			r.Header.Set("X-Forwarded-For", "203.0.113.9")
			if bc.auth != "" {
				r.Header.Set("Authorization", bc.auth)
			}
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				t, err := g.Admit(w, r, bc.kind)
				if err == nil {
					t.Quota().Set(w.Header())
					err = t.Authorize(w, r, id)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
