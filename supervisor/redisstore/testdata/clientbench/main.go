// clientbench measures the CPU the Redis store's two hot scripts (post,
// take) cost through go-redis (the client the store uses) and through
// rueidis (auto-pipelining), against one redis-server it starts on a free
// port and stops by PID. It is a module of its own, so rueidis stays out
// of the server's go.mod. docs/performance.md quotes it:
//
//	cd supervisor/redisstore/testdata/clientbench && go run . [-c 64] [-d 5s] [-rounds 3]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

func main() {
	conc := flag.Int("c", 64, "concurrent callers (mailboxes)")
	dur := flag.Duration("d", 5*time.Second, "each run")
	rounds := flag.Int("rounds", 3, "alternating rounds per client")
	flag.Parse()
	common := mustRead("../../lua/common.lua")
	post := common + "\n" + mustRead("../../lua/post.lua")
	take := common + "\n" + mustRead("../../lua/take.lua")

	results := map[string][][2]float64{}
	for r := range *rounds {
		for _, name := range []string{"go-redis", "rueidis"} {
			if r%2 == 1 {
				name = map[string]string{"go-redis": "rueidis", "rueidis": "go-redis"}[name]
			}
			port, pid, stop := startRedis()
			var run func(ctx context.Context, i int) error
			var closeClient func()
			addr := "127.0.0.1:" + strconv.Itoa(port)
			switch name {
			case "go-redis":
				c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, PoolSize: 128})
				ps, ts := redis.NewScript(post), redis.NewScript(take)
				run = func(ctx context.Context, i int) error {
					k := keys(i)
					if err := ps.Run(ctx, c, k, "0123456789abcdef", "100", "300000000", "15000000", "0", "zrc:{b}:w").Err(); err != nil {
						return err
					}
					return ts.Run(ctx, c, k, "300000000", "15000000").Err()
				}
				closeClient = func() { c.Close() }
			case "rueidis":
				c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, AlwaysRESP2: true})
				if err != nil {
					panic(err)
				}
				ps, ts := rueidis.NewLuaScript(post), rueidis.NewLuaScript(take)
				run = func(ctx context.Context, i int) error {
					k := keys(i)
					if err := ps.Exec(ctx, c, k, []string{"0123456789abcdef", "100", "300000000", "15000000", "0", "zrc:{b}:w"}).Error(); err != nil {
						return err
					}
					return ts.Exec(ctx, c, k, []string{"300000000", "15000000"}).Error()
				}
				closeClient = c.Close
			}
			pairs, clientCPU, redisCPU := drive(run, *conc, *dur, pid)
			closeClient()
			stop()
			us := func(cpu time.Duration) float64 { return float64(cpu.Microseconds()) / float64(pairs) }
			results[name] = append(results[name], [2]float64{us(clientCPU), us(redisCPU)})
			fmt.Printf("round %d %-8s: %d post+take pairs in %v (%.0f/s), client %.1f µs, redis %.1f µs per pair\n",
				r+1, name, pairs, *dur, float64(pairs)/dur.Seconds(), us(clientCPU), us(redisCPU))
		}
	}
	med := func(v [][2]float64, i int) float64 {
		x := make([]float64, len(v))
		for j := range v {
			x[j] = v[j][i]
		}
		sort.Float64s(x)
		return x[len(x)/2]
	}
	for _, name := range []string{"go-redis", "rueidis"} {
		v := results[name]
		fmt.Printf("median %-8s: client %.1f µs + redis %.1f µs = %.1f µs per post+take\n", name, med(v, 0), med(v, 1), med(v, 0)+med(v, 1))
	}
}

func keys(i int) []string {
	h := fmt.Sprintf("{%064x}:", i)
	return []string{"zrc:" + h + "q", "zrc:" + h + "s", "zrc:" + h + "l", "zrc:" + h + "m"}
}

// drive runs conc callers for d and returns the pairs done and the CPU
// this process and Redis spent meanwhile.
func drive(run func(context.Context, int) error, conc int, d time.Duration, redisPID int) (int64, time.Duration, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var n atomic.Int64
	c0, r0 := selfCPU(), procCPU(redisPID)
	var wg sync.WaitGroup
	for i := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := run(ctx, i); err != nil {
					if ctx.Err() == nil {
						panic(err)
					}
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return n.Load(), selfCPU() - c0, procCPU(redisPID) - r0
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		panic(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond // clock ticks of 100 Hz
}

func startRedis() (port, pid int, stop func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, _ := os.MkdirTemp("", "clientbench")
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	for range 100 {
		if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
			c.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return port, cmd.Process.Pid, func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait(); os.RemoveAll(dir) }
}

func mustRead(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	return string(b)
}
