package rules

import (
	"errors"
	"net/netip"
	"strings"
)

// PrefixAllowed says what an entry of ip_allowlist, ip_blocklist or
// trusted_proxies may be.
const PrefixAllowed = "must be a list of IP addresses or CIDR prefixes, IPv4 or IPv6 (e.g. 10.0.0.0/8, 2001:db8::/32)"

// The reasons ParsePrefix gives; each reads after the entry's name and
// value ("ip_allowlist entry 2 \"x\" is not ...").
var (
	errPrefixEmpty = errors.New("is empty")
	errNotPrefix   = errors.New("is not an IP address or CIDR prefix")
)

// ParsePrefix reads one list entry: an IP address (a single-address
// prefix) or a CIDR prefix, IPv4 or IPv6. An address with a zone
// (fe80::1%eth0) never matches a peer address and is refused. An
// IPv4-mapped IPv6 entry (::ffff:10.0.0.0/104) becomes its IPv4 prefix, so
// an IPv4 client matches it whatever the socket family. The prefix comes
// back masked.
func ParsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errPrefixEmpty
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, errNotPrefix
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, errNotPrefix
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}
