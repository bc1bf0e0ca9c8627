package actor

import (
	"strings"
	"testing"
)

// TestParseID: 64 hex characters of either case name the same mailbox;
// anything else is ErrBadID; a parse allocates nothing (it runs on every
// mailbox request).
func TestParseID(t *testing.T) {
	lower := strings.Repeat("ab", IDLen)
	want := ID{}
	for i := range want {
		want[i] = 0xab
	}
	for _, s := range []string{lower, strings.ToUpper(lower), strings.Repeat("aB", IDLen)} {
		if id, err := ParseID(s); err != nil || id != want {
			t.Errorf("ParseID(%q) = %x, %v; want %x", s, id, err, want)
		}
	}
	for _, s := range []string{"", lower[:63], lower + "a", lower[:62] + "zz", lower[:62] + "+1"} {
		if id, err := ParseID(s); err != ErrBadID || id != (ID{}) {
			t.Errorf("ParseID(%q) = %x, %v; want ErrBadID", s, id, err)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseID(lower) }); n != 0 {
		t.Errorf("%v allocations per ParseID; want 0", n)
	}
}
