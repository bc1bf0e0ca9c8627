package redistest

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a local Redis Cluster of masters without replicas, started
// by a test: each master a Server of its own (free port, own directory,
// stopped by PID when the test ends), joined with redis-cli --cluster
// create, which spreads the 16,384 slots evenly.
type Cluster struct {
	Masters []*Server
}

// StartCluster starts n masters with cluster mode on and joins them; it
// returns once every master reports cluster_state:ok. Persistence is off,
// as with Start.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		// redis-cli comes with redis-server (Debian package redis-tools).
		Start(t) // skips or fails as a missing redis-server does
	}
	c := &Cluster{}
	addrs := make([]string, n)
	for i := range n {
		s := Start(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000")
		c.Masters = append(c.Masters, s)
		addrs[i] = s.Addr()
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, s := range c.Masters {
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(s.Do(t, "CLUSTER", "INFO"), "cluster_state:ok") {
			if time.Now().After(deadline) {
				t.Fatalf("the cluster did not reach state ok on %s: %s", s.Addr(), s.Do(t, "CLUSTER", "INFO"))
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
	for _, s := range c.Masters {
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
