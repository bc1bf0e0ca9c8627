package guard

import (
	"crypto/ed25519"
	"crypto/sha256"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/conf/rules"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/client"
)

// SignatureSkew is how far a signed GET's timestamp may be from the
// server's clock, either way (Z4).
const SignatureSkew = 60 * time.Second

// maxReplayEntries caps the replay cache: about 12 MiB, 22 MiB when every
// entry is from a source of its own (each source is counted). Each entry
// lives at most 2×SignatureSkew, and every entry is a GET that passed the
// per-source rate limit and a signature check.
const maxReplayEntries = 1 << 17

// defaultReplayPerSource caps one source's share of the replay cache, so
// that a source signing GETs for keys of its own as fast as its limits let
// it (or an allowlisted one, without limits) fills its share and gets 429
// while every other source's signed GETs still pass: 32 such sources are
// needed to fill the cache. A source under the default GET rate limit
// (120 a minute) holds at most about 360 entries.
const defaultReplayPerSource = maxReplayEntries / 32

// Canonical header keys of a signed GET.
const (
	hdrKey       = "X-Mailbox-Key"
	hdrTimestamp = "X-Mailbox-Timestamp"
	hdrNonce     = "X-Mailbox-Nonce"
	hdrSignature = "X-Mailbox-Signature"
)

func init() {
	// The client package names the headers for clients; both must agree.
	if http.CanonicalHeaderKey(client.HeaderKey) != hdrKey || http.CanonicalHeaderKey(client.HeaderTimestamp) != hdrTimestamp ||
		http.CanonicalHeaderKey(client.HeaderNonce) != hdrNonce || http.CanonicalHeaderKey(client.HeaderSignature) != hdrSignature {
		panic("BUG: guard and client disagree on the signature headers")
	}
}

// signedGet is a parsed set of signature headers.
type signedGet struct {
	key       [ed25519.PublicKeySize]byte
	sig       [ed25519.SignatureSize]byte
	timestamp int64
	// rawTimestamp and nonce are the header values as sent: the signed
	// string holds them verbatim.
	rawTimestamp, nonce string
}

// parseSignature reads the four signature headers. cred is credMissing
// when any is absent (401), credBad when any is malformed: not exactly
// one line, wrong length, not hex (either case), a timestamp that is not
// unsigned decimal, a nonce outside 16–64 hex characters (403).
func parseSignature(h http.Header) (s signedGet, cred credential) {
	kl, tl, nl, sl := h[hdrKey], h[hdrTimestamp], h[hdrNonce], h[hdrSignature]
	if len(kl) == 0 || len(tl) == 0 || len(nl) == 0 || len(sl) == 0 {
		return s, credMissing
	}
	if len(kl) != 1 || len(tl) != 1 || len(nl) != 1 || len(sl) != 1 {
		return s, credBad
	}
	if !rules.DecodeHex(s.key[:], kl[0]) || !rules.DecodeHex(s.sig[:], sl[0]) {
		return s, credBad
	}
	ts, ok := parseUnix(tl[0])
	if !ok {
		return s, credBad
	}
	nonce := nl[0]
	if len(nonce) < 16 || len(nonce) > 64 || !isHex(nonce) {
		return s, credBad
	}
	s.timestamp, s.rawTimestamp, s.nonce = ts, tl[0], nonce
	return s, credBearer
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// parseUnix reads 1 to 18 decimal digits: every plausible unix time in
// seconds, and never an overflow.
func parseUnix(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// sigResult is the outcome of checking a signed GET.
type sigResult uint8

const (
	sigOK         sigResult = iota
	sigMissing              // 401
	sigBad                  // malformed, wrong key, stale, bad signature: 403
	sigReplayed             // (key, nonce) already used in the window: 403
	sigCacheFull            // the replay cache is full of live entries: 429
	sigSourceFull           // the source holds its share of live entries: 429
)

// verify checks a signed GET of mailbox id from source src at now, and
// records its (key, nonce) so it is accepted only once (Z4).
func (c *replayCache) verify(h http.Header, id actor.ID, src sourceKey, now time.Time) sigResult {
	s, cred := parseSignature(h)
	switch cred {
	case credMissing:
		return sigMissing
	case credBad:
		return sigBad
	}
	if sha256.Sum256(s.key[:]) != id {
		return sigBad
	}
	skew := now.Unix() - s.timestamp
	if skew > int64(SignatureSkew/time.Second) || skew < -int64(SignatureSkew/time.Second) {
		return sigBad
	}
	msg := client.SignedString(id.String(), s.rawTimestamp, s.nonce)
	if !ed25519.Verify(s.key[:], msg, s.sig[:]) {
		return sigBad
	}
	return c.add(replayKey(&s), src, s.timestamp+int64(SignatureSkew/time.Second), now.Unix())
}

// replayKey names a (key, nonce) pair, the nonce in either case: the
// first 16 bytes of SHA-256(key ‖ lower-case nonce).
func replayKey(s *signedGet) [16]byte {
	var buf [ed25519.PublicKeySize + 64]byte
	n := copy(buf[:], s.key[:])
	for i := 0; i < len(s.nonce); i++ {
		c := s.nonce[i]
		if 'A' <= c && c <= 'F' {
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	sum := sha256.Sum256(buf[:n])
	return [16]byte(sum[:16])
}

// replayCache remembers the (key, nonce) pairs of accepted signed GETs
// until their timestamps go stale, so that each is accepted once (Z4). It
// holds at most max entries, and at most perSource of one source's.
type replayCache struct {
	mu sync.Mutex
	// seen maps a pair to when it goes and whose it is; guarded by mu.
	seen map[[16]byte]replayEntry
	// sources counts each source's entries; a source with none has no
	// entry. Guarded by mu.
	sources map[sourceKey]sourceNonces
	// nextSweep is when expired entries are next dropped (unix seconds);
	// soonest is the earliest expiry of any entry. Both guarded by mu.
	nextSweep, soonest int64
	max                int
	perSource          int32
}

// replayEntry is a remembered pair: the unix second after which its
// timestamp is stale and the entry can go, and the source that sent it.
type replayEntry struct {
	expires int64
	src     sourceKey
}

// sourceNonces is one source's share of the cache.
type sourceNonces struct {
	n       int32
	soonest int64 // the earliest expiry of its entries
}

func newReplayCache(max, perSource int) *replayCache {
	return &replayCache{seen: make(map[[16]byte]replayEntry), sources: make(map[sourceKey]sourceNonces),
		max: max, perSource: int32(min(perSource, max))}
}

// add records a pair from src valid until expires, or reports it as
// replayed, or the source's share or the whole cache as full when they
// hold as many live entries as they may even after dropping the expired
// ones. A source at its share is refused before the cache fills, so that
// only it waits.
func (c *replayCache) add(k [16]byte, src sourceKey, expires, now int64) sigResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.seen[k]; ok && e.expires >= now {
		return sigReplayed
	}
	if now >= c.nextSweep || len(c.seen) >= c.max || c.sources[src].n >= c.perSource {
		c.sweepLocked(now)
	}
	sn, ok := c.sources[src]
	switch {
	case sn.n >= c.perSource:
		return sigSourceFull
	case len(c.seen) >= c.max:
		return sigCacheFull
	case !ok:
		sn.soonest = math.MaxInt64
	}
	c.seen[k] = replayEntry{expires: expires, src: src}
	sn.n++
	sn.soonest = min(sn.soonest, expires)
	c.sources[src] = sn
	c.soonest = min(c.soonest, expires)
	return sigOK
}

// sweepLocked drops expired entries, and only when one can have expired,
// so that a cache or a share full of live entries does not turn every
// request into a scan.
func (c *replayCache) sweepLocked(now int64) {
	if now < c.nextSweep && now < c.soonest {
		return // nothing can have expired since the last sweep
	}
	c.soonest = math.MaxInt64
	clear(c.sources)
	for k, e := range c.seen {
		if e.expires < now {
			delete(c.seen, k)
			continue
		}
		c.soonest = min(c.soonest, e.expires)
		sn, ok := c.sources[e.src]
		if !ok {
			sn.soonest = math.MaxInt64
		}
		sn.n++
		sn.soonest = min(sn.soonest, e.expires)
		c.sources[e.src] = sn
	}
	c.nextSweep = now + int64(SignatureSkew/time.Second)
}

// retryAfter is how long until the soonest entry expires, at least 1 s:
// of src's own after sigSourceFull, of any after sigCacheFull.
func (c *replayCache) retryAfter(r sigResult, src sourceKey, now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	soonest := c.soonest
	if sn, ok := c.sources[src]; ok && r == sigSourceFull {
		soonest = sn.soonest
	}
	return max(time.Duration(soonest-now.Unix()+1)*time.Second, time.Second)
}
