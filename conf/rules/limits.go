package rules

// The bounds of the guard's limits that are not conf's alone.
const (
	// MaxIPv6Prefix is the largest rate_limit_ipv6_prefix: every bit of
	// an IPv6 address.
	MaxIPv6Prefix = 128
	// MaxWaitingPerSource is the largest max_waiting_per_source the guard
	// can count (its counters are 32-bit).
	MaxWaitingPerSource = 1 << 30
)
