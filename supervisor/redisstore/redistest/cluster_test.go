package redistest

import (
	"strconv"
	"strings"
	"testing"
)

func TestStartCluster(t *testing.T) {
	c := StartCluster(t, 3)
	for _, s := range c.Masters {
		info := s.Do(t, "CLUSTER", "INFO")
		for _, want := range []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_known_nodes:3"} {
			if !strings.Contains(info, want) {
				t.Fatalf("CLUSTER INFO on %s lacks %q:\n%s", s.Addr(), want, info)
			}
		}
	}
	if c.SlotOwner(t, 0) == c.SlotOwner(t, 16383) {
		t.Fatal("slots 0 and 16383 on one master; want the slots spread over three")
	}
	slot := c.Slot(t, "zrc:{abc}:q")
	if slot != c.Slot(t, "abc") {
		t.Fatalf("slot of zrc:{abc}:q %d; want abc's, %d", slot, c.Slot(t, "abc"))
	}
	owner := c.SlotOwner(t, slot)
	if got := owner.Do(t, "SET", "zrc:{abc}:q", "v"); got != "OK" {
		t.Fatalf("SET on the slot's owner: %q", got)
	}
	for _, s := range c.Masters {
		if s != owner {
			if got := s.Do(t, "GET", "zrc:{abc}:q"); !strings.HasPrefix(got, "MOVED "+strconv.Itoa(slot)+" "+owner.Addr()) {
				t.Fatalf("GET on another master: %q; want MOVED to %s", got, owner.Addr())
			}
		}
	}
	// MoveSlot takes the key along, and every master sends it there.
	to := c.Masters[0]
	if to == owner {
		to = c.Masters[1]
	}
	c.MoveSlot(t, slot, to)
	if c.SlotOwner(t, slot) != to || to.Do(t, "GET", "zrc:{abc}:q") != "v" {
		t.Fatalf("after MoveSlot: owner %s, GET %q; want %s, v", c.SlotOwner(t, slot).Addr(), to.Do(t, "GET", "zrc:{abc}:q"), to.Addr())
	}
	for _, s := range c.Masters {
		if s != to {
			if got := s.Do(t, "GET", "zrc:{abc}:q"); !strings.HasPrefix(got, "MOVED "+strconv.Itoa(slot)+" "+to.Addr()) {
				t.Fatalf("GET on %s after the move: %q; want MOVED to %s", s.Addr(), got, to.Addr())
			}
		}
	}
	if want := "redis://" + c.Masters[0].Addr() + "/0?addr=" + c.Masters[1].Addr() + "&addr=" + c.Masters[2].Addr(); c.URL() != want {
		t.Fatalf("URL %q; want %q", c.URL(), want)
	}
	for _, s := range c.Masters {
		pid := s.PID()
		s.Stop()
		if pid == 0 || s.PID() != 0 {
			t.Fatalf("stopping %s: pid %d before, %d after", s.Addr(), pid, s.PID())
		}
	}
}
