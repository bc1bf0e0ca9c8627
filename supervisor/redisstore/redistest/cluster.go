package redistest

import (
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a local Redis Cluster, started by a test: each process a
// Server of its own (free port, own directory, stopped by PID when the
// test ends), joined with redis-cli --cluster create, which spreads the
// 16,384 slots evenly over the masters.
type Cluster struct {
	Masters  []*Server
	Replicas []*Server // as started; a failover may promote one
}

// StartCluster starts n masters without replicas, with cluster mode on,
// and joins them; it returns once every master reports cluster_state:ok.
// Persistence is off, as with Start.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return startCluster(t, n, 0)
}

// StartClusterWithReplicas starts n masters (at least 3) with one
// replica each; it returns once every replica is in sync with its master.
func StartClusterWithReplicas(t testing.TB, n int) *Cluster {
	t.Helper()
	return startCluster(t, n, 1)
}

func startCluster(t testing.TB, n, replicas int) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		Start(t) // skips or fails as a missing redis-server does
		missing(t, "redis-cli not found on PATH: install the Debian package redis-tools (redis-server depends on it) to run the Redis Cluster tests")
	}
	c := &Cluster{}
	var all []*Server
	for range n * (1 + replicas) {
		all = append(all, Start(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000"))
	}
	args := []string{"--cluster", "create"}
	for _, s := range all {
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, s := range all {
		deadline := time.Now().Add(20 * time.Second)
		for {
			info := s.Do(t, "INFO", "replication")
			ok := strings.Contains(s.Do(t, "CLUSTER", "INFO"), "cluster_state:ok")
			if ok && strings.Contains(info, "role:master") {
				c.Masters = append(c.Masters, s)
				break
			}
			if ok && strings.Contains(info, "master_link_status:up") && !strings.Contains(info, "master_sync_in_progress:1") {
				c.Replicas = append(c.Replicas, s)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not join the cluster: %s\n%s", s.Addr(), s.Do(t, "CLUSTER", "INFO"), info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// URL is a redis:// URL naming every master: the first as host, the
// others as addr= parameters.
func (c *Cluster) URL() string {
	u := "redis://" + c.Masters[0].Addr() + "/0"
	for i, s := range c.Masters[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + s.Addr()
	}
	return u
}

// SlotOwner is the master that serves slot.
func (c *Cluster) SlotOwner(t testing.TB, slot int) *Server {
	t.Helper()
	for _, s := range slices.Concat(c.Masters, c.Replicas) {
		if s.PID() == 0 || !strings.Contains(s.Do(t, "INFO", "replication"), "role:master") {
			continue
		}
		id := s.Do(t, "CLUSTER", "MYID")
		for _, line := range strings.Split(s.Do(t, "CLUSTER", "NODES"), "\n") {
			f := strings.Fields(line)
			if len(f) < 9 || f[0] != id {
				continue
			}
			for _, r := range f[8:] {
				lo, hi, ok := strings.Cut(r, "-")
				if !ok {
					hi = lo
				}
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(hi)
				if err1 == nil && err2 == nil && a <= slot && slot <= b {
					return s
				}
			}
		}
	}
	t.Fatalf("no master serves slot %d", slot)
	return nil
}

// Slot is the Cluster slot of key.
func (c *Cluster) Slot(t testing.TB, key string) int {
	t.Helper()
	n, err := strconv.Atoi(c.Masters[0].Do(t, "CLUSTER", "KEYSLOT", key))
	if err != nil {
		t.Fatalf("CLUSTER KEYSLOT %s: %v", key, err)
	}
	return n
}

// MoveSlot moves slot, with its keys, to the master to, as
// redis-cli --cluster reshard does for each slot: the target imports,
// the owner migrates its keys, then every master learns the new owner.
func (c *Cluster) MoveSlot(t testing.TB, slot int, to *Server) {
	t.Helper()
	from := c.SlotOwner(t, slot)
	if from == to {
		t.Fatalf("slot %d is on %s already", slot, to.Addr())
	}
	s := strconv.Itoa(slot)
	fromID, toID := from.Do(t, "CLUSTER", "MYID"), to.Do(t, "CLUSTER", "MYID")
	ok := func(m *Server, args ...string) {
		t.Helper()
		if r := m.Do(t, args...); r != "OK" && r != "NOKEY" {
			t.Fatalf("%s %v: %s", m.Addr(), args, r)
		}
	}
	ok(to, "CLUSTER", "SETSLOT", s, "IMPORTING", fromID)
	ok(from, "CLUSTER", "SETSLOT", s, "MIGRATING", toID)
	host, port, _ := strings.Cut(to.Addr(), ":")
	for {
		keys := strings.Fields(from.Do(t, "CLUSTER", "GETKEYSINSLOT", s, "100"))
		if len(keys) == 0 {
			break
		}
		ok(from, append([]string{"MIGRATE", host, port, "", "0", "5000", "KEYS"}, keys...)...)
	}
	ok(to, "CLUSTER", "SETSLOT", s, "NODE", toID)
	ok(from, "CLUSTER", "SETSLOT", s, "NODE", toID)
	for _, m := range c.Masters {
		if m != to && m != from {
			ok(m, "CLUSTER", "SETSLOT", s, "NODE", toID)
		}
	}
}
