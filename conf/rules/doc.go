// Package rules holds the rules a configured value must follow that both
// conf and the server apply: what an authentication token may be (R5.1),
// what an IP or CIDR list entry may be (R4.5, R4.6, Z3) and the limits
// the guard can hold. conf validates with them, so --check-config refuses
// exactly what the server would refuse at start, and httpapi/guard reads
// auth_tokens, mailbox_tokens_file, presented Bearer credentials,
// ip_allowlist, ip_blocklist and trusted_proxies with them. It imports
// nothing of this module, so both may import it.
package rules
