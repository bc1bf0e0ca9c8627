package guard

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/zrc-rendezvous/zrc-rendezvous/conf/rules"
)

// FuzzBearerToken: whatever the header, the parser never panics, a token
// it returns is one a Bearer credential can carry and comes from the
// header, and a credential it calls missing has no usable Bearer token.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"", "Bearer t", "bearer  t ", "Bearer", "Basic x", "Bearer a b", "Bearer\x00", "BEARER tok=="} {
		f.Add(s, false)
	}
	f.Add("Bearer a", true)
	f.Fuzz(func(t *testing.T, v string, twice bool) {
		lines := []string{v}
		if twice {
			lines = append(lines, v)
		}
		tok, cred := bearerToken(lines)
		switch cred {
		case credBearer:
			if twice || !rules.Visible(tok) || !strings.Contains(v, tok) {
				t.Fatalf("bearerToken(%q) = %q", lines, tok)
			}
		case credMissing, credBad:
			if tok != "" {
				t.Fatalf("bearerToken(%q) = %q with %v", lines, tok, cred)
			}
		default:
			t.Fatalf("bearerToken(%q): credential %v", lines, cred)
		}
	})
}

// FuzzSignatureHeaders: the parser never panics, and what it accepts
// has exactly the shapes Z4 names.
func FuzzSignatureHeaders(f *testing.F) {
	key, sig := strings.Repeat("ab", 32), strings.Repeat("CD", 64)
	f.Add(key, "1700000000", "0123456789abcdef", sig)
	f.Add(key, "", "0123456789abcdef", sig)
	f.Add(key[:10], "-1", "xyz", sig[:3])
	f.Add(key, "99999999999999999999", strings.Repeat("f", 64), sig)
	f.Fuzz(func(t *testing.T, k, ts, nonce, s string) {
		h := http.Header{hdrKey: {k}, hdrTimestamp: {ts}, hdrNonce: {nonce}, hdrSignature: {s}}
		got, cred := parseSignature(h)
		if cred != credBearer {
			return
		}
		if len(k) != 64 || len(s) != 128 || !isHex(k) || !isHex(s) || len(nonce) < 16 || len(nonce) > 64 || !isHex(nonce) {
			t.Fatalf("accepted key %q nonce %q signature %q", k, nonce, s)
		}
		if got.rawTimestamp != ts || got.nonce != nonce || got.timestamp < 0 {
			t.Fatalf("parsed %+v from timestamp %q nonce %q", got, ts, nonce)
		}
	})
}

// FuzzForwardedFor: the parser never panics, and an address it returns
// is one of the header's hops that no hop to its right hides: every hop
// right of it is a trusted proxy.
func FuzzForwardedFor(f *testing.F) {
	for _, s := range []string{"203.0.113.5", "1.1.1.1, 10.0.0.1", "junk, 10.0.0.1", "10.0.0.1, 10.0.0.2", "", " , ", "::1, 2001:db8::1", "1.2.3.4:80"} {
		f.Add(s, "")
	}
	f.Add("203.0.113.5", "10.0.0.3, 10.0.0.4")
	trusted := mustPrefixes(f, "10.0.0.0/8", "2001:db8::/32")
	f.Fuzz(func(t *testing.T, first, second string) {
		lines := []string{first}
		if second != "" {
			lines = append(lines, second)
		}
		got, ok := forwardedFor(lines, trusted)
		if !ok {
			return
		}
		hops := strings.Split(strings.Join(lines, ","), ",")
		i := len(hops) - 1
		for ; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.Trim(hops[i], " \t"))
			if err != nil {
				t.Fatalf("%q: returned %v past an unparsable hop %q", lines, got, hops[i])
			}
			if a.Unmap() == got && (!trusted.contains(got) || i == 0) {
				break
			}
			if !trusted.contains(a.Unmap()) {
				t.Fatalf("%q: returned %v, but untrusted %v is further right", lines, got, a)
			}
		}
		if i < 0 {
			t.Fatalf("%q: returned %v, which is not a hop", lines, got)
		}
	})
}
