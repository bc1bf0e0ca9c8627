package redisstore

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// A mailbox's keys and channel are "<prefix>{<hex id>}:<suffix>", in
// lua/common.lua's order, and the queue reads its hex id back from them.
func TestMailboxKeys(t *testing.T) {
	var id actor.ID
	for i := range id {
		id[i] = byte(i * 9)
	}
	hexID := id.String()
	q := (&Store{opts: Options{KeyPrefix: "rdv1:"}}).newQueue(id)
	for i, suffix := range strings.Split("q s l m c", " ") {
		if want := "rdv1:{" + hexID + "}:" + suffix; q.keys[i] != want {
			t.Errorf("key %d = %q; want %q", i, q.keys[i], want)
		}
	}
	if want := "rdv1:{" + hexID + "}:w"; q.channel != want {
		t.Errorf("channel = %q; want %q", q.channel, want)
	}
	if q.hexID() != hexID {
		t.Errorf("hexID = %q; want %q", q.hexID(), hexID)
	}
}

// An entry as the post script writes it decodes to its sequence, arrival
// and body, whatever bytes the body holds.
func TestDeliveryDecodesEntries(t *testing.T) {
	body := []byte{0, ',', 0xff, '\n', ','}
	e := "1796316739786898,1796316739786000," + string(body)
	d, err := delivery(e, int64(4))
	if err != nil || !d.OK || d.Message.Seq != 1796316739786898 || d.Message.Arrived.UnixMicro() != 1796316739786000 ||
		!bytes.Equal(d.Message.Body, body) || d.QueueLen != 4 {
		t.Fatalf("delivery = %+v, %v", d, err)
	}
	if d, err := delivery(nil, int64(0)); err != nil || d.OK {
		t.Fatalf("no entry: %+v, %v; want no message", d, err)
	}
	for _, bad := range []any{"", "1,2", "x,2,b", "1,y,b", "-1,2,b", int64(3)} {
		if _, err := delivery(bad, int64(0)); err == nil {
			t.Errorf("delivery(%q) accepted", bad)
		}
	}
}

// Whatever a store holds, decoding never panics, and what it accepts
// round-trips.
func FuzzDelivery(f *testing.F) {
	f.Add("1,2,body")
	f.Add("1796316739786898,1796316739786000,\x00,")
	f.Add(",,")
	f.Fuzz(func(t *testing.T, e string) {
		d, err := delivery(e, int64(0))
		if err != nil {
			return
		}
		again := strconv.FormatUint(d.Message.Seq, 10) + "," + strconv.FormatInt(d.Message.Arrived.UnixMicro(), 10) + "," + string(d.Message.Body)
		d2, err := delivery(again, int64(0))
		if err != nil || d2.Message.Seq != d.Message.Seq || !d2.Message.Arrived.Equal(d.Message.Arrived) || !bytes.Equal(d2.Message.Body, d.Message.Body) {
			t.Fatalf("%q decoded to %+v, which does not round-trip: %+v, %v", e, d, d2, err)
		}
	})
}
