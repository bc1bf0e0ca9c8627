package redisstore

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor/redisstore/redistest"
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

// At most poolSize store calls are inside go-redis at once; the others
// wait for a place and fail as store_unavailable once Timeout has passed
// without one. A call gives its place back however it ends.
func TestStoreCallsWaitForAPlace(t *testing.T) {
	rs := redistest.Start(t)
	s := node(t, rs)
	q := s.Queue(actor.ID{1}, &actor.Stats{})
	for range poolSize {
		s.calls <- struct{}{}
	}
	start := time.Now()
	_, err := q.Take(time.Now())
	const want = "message store is unavailable: take: redis: connection pool timeout"
	if waited := time.Since(start); !errors.Is(err, actor.ErrStoreUnavailable) || err.Error() != want ||
		waited < s.opts.Timeout || waited > s.opts.Timeout+time.Second {
		t.Fatalf("a take with every place held: %v after %v; want store_unavailable (pool timeout) after %v", err, waited, s.opts.Timeout)
	}

	<-s.calls // one place free
	if _, err := q.Post(time.Now(), []byte("x"), false); err != nil {
		t.Fatalf("post with a place free: %v", err)
	}
	if n := len(s.calls); n != poolSize-1 {
		t.Fatalf("%d places held after the post; want %d: the post kept its place", n, poolSize-1)
	}
	rs.Stop()
	if _, err := q.Take(time.Now()); !errors.Is(err, actor.ErrStoreUnavailable) {
		t.Fatalf("take with Redis stopped: %v; want store_unavailable", err)
	}
	if n := len(s.calls); n != poolSize-1 {
		t.Fatalf("%d places held after a failed take; want %d: the take kept its place", n, poolSize-1)
	}
}
