package rules

import (
	"net/netip"
	"testing"
)

// R4.5, R4.6, Z3: the one reading of an IP list entry, for conf's
// validation and the guard alike.
func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in, want, err string // want "" when refused with err
	}{
		{"10.0.0.0/8", "10.0.0.0/8", ""},
		{"10.1.2.3/8", "10.0.0.0/8", ""},
		{"192.0.2.7", "192.0.2.7/32", ""},
		{"2001:db8::/32", "2001:db8::/32", ""},
		{"::1", "::1/128", ""},
		{"::ffff:198.51.100.0/120", "198.51.100.0/24", ""},
		{"::ffff:198.51.100.7", "198.51.100.7/32", ""},
		{"", "", "is empty"},
		{"10.0.0.0/33", "", "is not an IP address or CIDR prefix"},
		{"fe80::1%eth0", "", "is not an IP address or CIDR prefix"},
		{"fe80::1%eth0/64", "", "is not an IP address or CIDR prefix"},
		{"example.com", "", "is not an IP address or CIDR prefix"},
		{"1.2.3.4:80", "", "is not an IP address or CIDR prefix"},
	}
	for _, tt := range tests {
		p, err := ParsePrefix(tt.in)
		switch {
		case tt.want == "" && (err == nil || err.Error() != tt.err):
			t.Errorf("ParsePrefix(%q) = %v, %v; want error %q", tt.in, p, err, tt.err)
		case tt.want != "" && (err != nil || p != netip.MustParsePrefix(tt.want)):
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
		}
	}
}
