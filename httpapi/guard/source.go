package guard

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/zrc-rendezvous/zrc-rendezvous/conf/rules"
)

// prefixSet is a list of IP prefixes, IPv4 and IPv6, matched in order. The
// lists an operator writes (allow, block, trusted proxies) are short, so a
// scan beats a trie here; entries are unmapped at parse time, so an IPv4
// client matches an IPv4 entry whatever the socket family.
type prefixSet []netip.Prefix

// parsePrefixSet reads IPs and CIDRs, IPv4 and IPv6 (R4.5, R4.6, Z3), by
// the rule conf validates the lists with (rules.ParsePrefix).
func parsePrefixSet(what string, entries []string) (prefixSet, error) {
	set := make(prefixSet, 0, len(entries))
	for i, e := range entries {
		p, err := rules.ParsePrefix(e)
		if err != nil {
			return nil, fmt.Errorf("%s entry %d %q %w", what, i+1, e, err)
		}
		set = append(set, p)
	}
	return set, nil
}

// contains reports whether a (unmapped) lies in any prefix of the set.
func (s prefixSet) contains(a netip.Addr) bool {
	for _, p := range s {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr is the TCP peer of r, unmapped; the zero Addr when RemoteAddr
// is not an ip:port (a test recorder, a unix socket).
// The port is cut off rather than parsed: net/http wrote it, and parsing
// it was a quarter of Admit's time.
func peerAddr(r *http.Request) netip.Addr {
	host := r.RemoteAddr
	i := strings.LastIndexByte(host, ':')
	if i < 0 {
		return netip.Addr{}
	}
	host = host[:i]
	if len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	// A link-local peer's zone would make every prefix miss it.
	return a.WithZone("").Unmap()
}

// clientAddr is the address a request is accounted to (Z3): the TCP peer,
// unless the peer is a trusted proxy; then the first address of
// X-Forwarded-For, read from the right, that is not a trusted proxy (the
// leftmost when every hop is trusted). A missing or malformed header leaves
// the peer. Headers from an untrusted peer are never read.
func clientAddr(r *http.Request, trusted prefixSet) netip.Addr {
	peer := peerAddr(r)
	if len(trusted) == 0 || !trusted.contains(peer) {
		return peer
	}
	if a, ok := forwardedFor(r.Header["X-Forwarded-For"], trusted); ok {
		return a
	}
	return peer
}

// forwardedFor walks the X-Forwarded-For hops from the right (the last
// header line's last hop was added by the nearest proxy) and returns the
// first one outside trusted, or the leftmost if all are trusted. ok is
// false when there is no hop or a hop it had to read is not a plain IP
// address (a port, a zone, an empty element, garbage): the header is then
// malformed and the caller keeps the peer. Hops left of the answer are
// client-controlled and never parsed. It allocates nothing.
func forwardedFor(lines []string, trusted prefixSet) (netip.Addr, bool) {
	var leftmost netip.Addr
	for i := len(lines) - 1; i >= 0; i-- {
		rest := lines[i]
		for {
			hop := rest
			j := strings.LastIndexByte(rest, ',')
			if j >= 0 {
				hop, rest = rest[j+1:], rest[:j]
			}
			a, ok := parseHop(hop)
			if !ok {
				return netip.Addr{}, false
			}
			if !trusted.contains(a) {
				return a, true
			}
			leftmost = a
			if j < 0 {
				break
			}
		}
	}
	return leftmost, leftmost.IsValid()
}

// parseHop reads one X-Forwarded-For element: an IP address with optional
// surrounding spaces or tabs, unmapped.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.Trim(s, " \t")
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// sourceKey names a rate-limit source: an IPv4 address, or an IPv6
// address masked to the configured prefix, as 16 bytes (R4.1, R4.2). The
// zero key stands for a request without a usable peer address.
type sourceKey [16]byte

// keyOf turns an unmapped client address into its source key.
func keyOf(a netip.Addr, v6bits int) sourceKey {
	if a.Is6() && v6bits < 128 {
		if p, err := a.Prefix(v6bits); err == nil {
			a = p.Addr()
		}
	}
	if !a.IsValid() {
		return sourceKey{}
	}
	return a.As16()
}

// shard picks one of numShards for the key: FNV-1a over its bytes.
func (k *sourceKey) shard() int {
	h := uint32(2166136261)
	for _, b := range k {
		h = (h ^ uint32(b)) * 16777619
	}
	return int(h % numShards)
}
