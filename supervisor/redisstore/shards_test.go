package redisstore

import (
	"testing"

	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor/redisstore/redistest"
)

// slotOf agrees with Redis' CLUSTER KEYSLOT, hash tags included.
func TestSlotOfMatchesRedis(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	for _, key := range []string{"", "foo", "a", "zrc:{" + "00ff" + "}:w", "{}x", "x{}{y}", "{a}{b}", "no}tag{", "{user1000}.following", "zrc:epoch"} {
		if got, want := slotOf(key), c.Slot(t, key); got != want {
			t.Errorf("slotOf(%q) = %d; CLUSTER KEYSLOT says %d", key, got, want)
		}
	}
	if got := slotOf("foo"); got != 12182 {
		t.Errorf("slotOf(foo) = %d; want 12182 (Redis' documentation)", got)
	}
}
