package guard

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

func mustPrefixes(t testing.TB, entries ...string) prefixSet {
	t.Helper()
	s, err := parsePrefixSet("test", entries)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParsePrefixSet(t *testing.T) {
	s := mustPrefixes(t, "10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1", "::ffff:198.51.100.0/120")
	tests := []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true},
		{"11.0.0.1", false},
		{"192.0.2.7", true},
		{"192.0.2.8", false},
		{"2001:db8:1::5", true},
		{"2001:db9::1", false},
		{"::1", true},
		{"198.51.100.200", true}, // the mapped entry became 198.51.100.0/24
		{"198.51.101.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if got := s.contains(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("contains(%s) = %v; want %v", tt.addr, got, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "10.0.0.0/33", "fe80::1%eth0", "example.com", "1.2.3.4:80"} {
		if _, err := parsePrefixSet("test", []string{bad}); err == nil {
			t.Errorf("parsePrefixSet(%q) accepted", bad)
		}
	}
}

func TestForwardedFor(t *testing.T) {
	trusted := mustPrefixes(t, "10.0.0.0/8", "2001:db8:ff::/48")
	tests := []struct {
		name  string
		lines []string
		want  string // "" : not ok, the peer stays
	}{
		{"one hop", []string{"203.0.113.5"}, "203.0.113.5"},
		{"rightmost untrusted wins", []string{"198.51.100.1, 203.0.113.5, 10.0.0.2"}, "203.0.113.5"},
		{"left of the answer is never parsed", []string{"garbage, 203.0.113.5"}, "203.0.113.5"},
		{"several lines read as one list", []string{"198.51.100.1", "203.0.113.5, 10.1.1.1"}, "203.0.113.5"},
		{"all trusted: leftmost", []string{"10.0.0.9, 10.0.0.8", "10.0.0.7"}, "10.0.0.9"},
		{"spaces and tabs", []string{" 203.0.113.5 ,\t10.0.0.1 "}, "203.0.113.5"},
		{"ipv6", []string{"2001:db8:1::7, 2001:db8:ff::1"}, "2001:db8:1::7"},
		{"mapped ipv4 unmapped", []string{"::ffff:203.0.113.5"}, "203.0.113.5"},
		{"missing", nil, ""},
		{"empty", []string{""}, ""},
		{"empty element next to the proxy", []string{"203.0.113.5, "}, ""},
		{"port", []string{"203.0.113.5:4444"}, ""},
		{"bracketed ipv6", []string{"[2001:db8::1]"}, ""},
		{"zone", []string{"fe80::1%eth0"}, ""},
		{"garbage hop before the answer", []string{"203.0.113.5, junk, 10.0.0.1"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := forwardedFor(tt.lines, trusted)
			switch {
			case tt.want == "" && ok:
				t.Errorf("forwardedFor(%q) = %v; want malformed", tt.lines, got)
			case tt.want != "" && (!ok || got != netip.MustParseAddr(tt.want)):
				t.Errorf("forwardedFor(%q) = %v, %v; want %s", tt.lines, got, ok, tt.want)
			}
		})
	}
}

func TestClientAddrTrustsOnlyProxies(t *testing.T) {
	trusted := mustPrefixes(t, "10.0.0.0/8")
	r, _ := http.NewRequest("GET", "/", nil)
	r.Header.Set("X-Forwarded-For", "203.0.113.5")
	for _, tt := range []struct{ peer, want string }{
		{"10.0.0.1:5000", "203.0.113.5"},          // a trusted proxy: believed
		{"192.0.2.1:5000", "192.0.2.1"},           // anyone else: ignored (Z3)
		{"[::ffff:10.0.0.1]:5000", "203.0.113.5"}, // a mapped peer is its IPv4 self
	} {
		r.RemoteAddr = tt.peer
		if got := clientAddr(r, trusted); got != netip.MustParseAddr(tt.want) {
			t.Errorf("peer %s: client %v; want %s", tt.peer, got, tt.want)
		}
	}
	r.RemoteAddr = "10.0.0.1:5000"
	r.Header.Set("X-Forwarded-For", "203.0.113.5:80")
	if got := clientAddr(r, trusted); got != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("malformed header: client %v; want the peer", got)
	}
}

func TestKeyOfGroupsIPv6(t *testing.T) {
	a := keyOf(netip.MustParseAddr("2001:db8:0:1::1"), 64)
	b := keyOf(netip.MustParseAddr("2001:db8:0:1:ffff::2"), 64)
	c := keyOf(netip.MustParseAddr("2001:db8:0:2::1"), 64)
	if a != b || a == c {
		t.Errorf("/64 grouping: same /64 equal %v, other /64 different %v", a == b, a != c)
	}
	if keyOf(netip.MustParseAddr("2001:db8::1"), 128) == keyOf(netip.MustParseAddr("2001:db8::2"), 128) {
		t.Error("/128: two addresses share a key")
	}
	if keyOf(netip.MustParseAddr("192.0.2.1"), 64) == keyOf(netip.MustParseAddr("192.0.2.2"), 64) {
		t.Error("IPv4 addresses share a key")
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		tok   string
		cred  credential
	}{
		{"none", nil, "", credMissing},
		{"basic", []string{"Basic dXNlcjpwYXNz"}, "", credMissing},
		{"plain", []string{"Bearer abc.DEF-123"}, "abc.DEF-123", credBearer},
		{"scheme in any case", []string{"bEaReR tok"}, "tok", credBearer},
		{"several spaces", []string{"Bearer    tok  "}, "tok", credBearer},
		{"no token", []string{"Bearer"}, "", credMissing},
		{"only spaces", []string{"Bearer   "}, "", credMissing},
		{"scheme prefix of another", []string{"Bearerx tok"}, "", credMissing},
		{"space inside", []string{"Bearer to ken"}, "", credBad},
		{"tab separator", []string{"Bearer\ttok"}, "", credMissing},
		{"non-ascii", []string{"Bearer tökén"}, "", credBad},
		{"two headers", []string{"Bearer a", "Bearer b"}, "", credBad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, cred := bearerToken(tt.lines)
			if tok != tt.tok || cred != tt.cred {
				t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tt.lines, tok, cred, tt.tok, tt.cred)
			}
		})
	}
}

func TestParseToken(t *testing.T) {
	sum := sha256.Sum256([]byte("s3cret"))
	for _, tok := range []string{"s3cret", "sha256:" + hex.EncodeToString(sum[:]), "sha256:" + strings.ToUpper(hex.EncodeToString(sum[:]))} {
		d, err := parseToken(tok)
		if err != nil || d != sum {
			t.Errorf("parseToken(%q) = %x, %v; want the digest of s3cret", tok, d, err)
		}
	}
	for _, tok := range []string{"", "sha256:abc", "sha256:" + strings.Repeat("g", 64), "with space", "tab\t"} {
		if _, err := parseToken(tok); err == nil {
			t.Errorf("parseToken(%q) accepted", tok)
		} else if tok != "" && strings.Contains(err.Error(), tok) {
			t.Errorf("error %q repeats the token", err)
		}
	}
}

func TestMatchAnyIsMembership(t *testing.T) {
	a, b, c := digest{1}, digest{2}, digest{3}
	if !matchAny(&a, []digest{c, a}, nil) || !matchAny(&b, nil, []digest{b}) || matchAny(&c, []digest{a}, []digest{b}) {
		t.Error("matchAny is not set membership")
	}
}

const (
	ridA = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	ridB = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
)

func TestParseMailboxTokens(t *testing.T) {
	sum := sha256.Sum256([]byte("b-token"))
	good := "[mailboxes]\n" +
		`"` + ridA + `" = ["a-token", "a-second"]` + "\n" +
		strings.ToUpper(ridB) + ` = ["sha256:` + hex.EncodeToString(sum[:]) + `"]` + "\n"
	mt, err := ParseMailboxTokens([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if mt.Len() != 2 {
		t.Fatalf("%d mailboxes; want 2", mt.Len())
	}
	idB, _ := actor.ParseID(ridB)
	if got := mt.byID[idB]; len(got) != 1 || got[0] != sum {
		t.Errorf("mailbox B tokens %x; want the digest", got)
	}

	tests := []struct {
		name, file, want string
	}{
		{"not toml", "[mailboxes\n", "line 1"},
		{"unknown table", "[other]\nx = 1\n", "only the [mailboxes] table"},
		{"bad id", "[mailboxes]\nnot-an-id = [\"t\"]\n", "not a recipient id"},
		{"same id twice", "[mailboxes]\n" + ridA + " = [\"t\"]\n" + strings.ToUpper(ridA) + " = [\"u\"]\n", "already listed"},
		{"no tokens", "[mailboxes]\n" + ridA + " = []\n", "has no tokens"},
		{"bad token", "[mailboxes]\n" + ridA + " = [\"two words\"]\n", "token entry 1"},
		{"not a list", "[mailboxes]\n" + ridA + " = \"secret-value\"\n", "line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMailboxTokens([]byte(tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want one containing %q", err, tt.want)
			}
			for _, secret := range []string{"two words", "secret-value", ridA, strings.ToUpper(ridA)} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q repeats %q", err, secret)
				}
			}
		})
	}
}

// The example in packaging/ is what docs/auth.md shows; it must load.
func TestMailboxTokensExampleLoads(t *testing.T) {
	mt, err := LoadMailboxTokens("../../packaging/mailbox-tokens.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if mt.Len() == 0 {
		t.Fatal("the example lists no mailbox")
	}
	b, err := os.ReadFile("../../docs/auth.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "packaging/mailbox-tokens.example.toml") {
		t.Error("docs/auth.md does not point at the example file")
	}
}

func TestParseSignature(t *testing.T) {
	key, sig := strings.Repeat("ab", 32), strings.Repeat("CD", 64)
	base := func() http.Header {
		h := http.Header{}
		h.Set(hdrKey, key)
		h.Set(hdrTimestamp, "1700000000")
		h.Set(hdrNonce, "0123456789abcdef")
		h.Set(hdrSignature, sig)
		return h
	}
	if _, cred := parseSignature(base()); cred != credBearer {
		t.Fatalf("well-formed headers: %v", cred)
	}
	tests := []struct {
		name   string
		header string
		value  string // "" deletes it
		want   credential
	}{
		{"no key", hdrKey, "", credMissing},
		{"no timestamp", hdrTimestamp, "", credMissing},
		{"no nonce", hdrNonce, "", credMissing},
		{"no signature", hdrSignature, "", credMissing},
		{"short key", hdrKey, key[:62], credBad},
		{"key not hex", hdrKey, strings.Repeat("zz", 32), credBad},
		{"signed timestamp", hdrTimestamp, "-1700000000", credBad},
		{"decimal timestamp", hdrTimestamp, "1700000000.5", credBad},
		{"huge timestamp", hdrTimestamp, strings.Repeat("9", 19), credBad},
		{"short nonce", hdrNonce, "0123456789abcde", credBad},
		{"long nonce", hdrNonce, strings.Repeat("a", 65), credBad},
		{"nonce not hex", hdrNonce, "0123456789abcdeg", credBad},
		{"upper-case nonce", hdrNonce, "0123456789ABCDEF", credBearer},
		{"64-character nonce", hdrNonce, strings.Repeat("F", 64), credBearer},
		{"short signature", hdrSignature, sig[:126], credBad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := base()
			if tt.value == "" {
				h.Del(tt.header)
			} else {
				h.Set(tt.header, tt.value)
			}
			if _, cred := parseSignature(h); cred != tt.want {
				t.Errorf("parseSignature = %v; want %v", cred, tt.want)
			}
		})
	}
	h := base()
	h.Add(hdrNonce, "fedcba9876543210")
	if _, cred := parseSignature(h); cred != credBad {
		t.Errorf("two nonce headers: %v; want bad", cred)
	}
}
