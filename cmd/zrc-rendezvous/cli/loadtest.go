package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/cmd/internal/loadtest"
)

// loadTest: zrc-rendezvous loadtest [flags]
func loadTest(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet(env, "loadtest", "loadtest [flags]",
		"Drives the server at --url (or the nodes at --url a,b,c sharing one store) with --mailboxes × --pollers waiting long-polls and --posters posting at\n"+
			"--rate, verifies every delivered body (byte-identical to one sent, none twice), drains, and reports\n"+
			"throughput, delivery latency, statuses, lost and duplicated messages and the server's memory and\n"+
			"CPU. Exits 1 when verification fails. docs/loadtest.md describes it.")
	var srv server
	srv.register(fs, env)
	var cfg loadtest.Config
	fs.BoolVar(&cfg.SameNode, "same-node", false, "with several nodes, post to each mailbox on the node its long-polls wait on, as a load balancer routing by path would (default: on the next node, so every message crosses)")
	fs.IntVar(&cfg.Mailboxes, "mailboxes", 100, "mailboxes (fresh random ids each run)")
	fs.IntVar(&cfg.Pollers, "pollers", 1, "long-pollers per mailbox")
	fs.IntVar(&cfg.Posters, "posters", 8, "concurrent posters")
	fs.Float64Var(&cfg.Rate, "rate", 1000, "target posts per second over all posters; 0 = as fast as they can")
	fs.IntVar(&cfg.Size, "size", 1024, fmt.Sprintf("payload bytes (at least %d)", loadtest.MinPayload))
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured window")
	fs.DurationVar(&cfg.WarmUp, "warmup", 2*time.Second, "traffic before the measured window")
	fs.DurationVar(&cfg.Drain, "drain", 10*time.Second, "longest wait, after posting stops, for every accepted message to be delivered")
	fs.DurationVar(&cfg.Wait, "wait", 30*time.Second, "each long-poll's wait_ms")
	fs.StringVar(&cfg.MetricsURL, "metrics-url", "", "where the server's /metrics are (default <url>/metrics; - for none)")
	sources := fs.String("source-addrs", "", "local addresses to connect from, round robin: a list (127.0.0.1,127.0.0.2) or a count N for 127.0.0.1…127.0.0.N")
	pids := fs.String("server-pid", "", "the server's process id, or several separated by commas (nodes, their Redis), to read their CPU time and RSS from /proc (Linux), summed")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of tables")
	htmlPath := fs.String("html", "", "also write the report as a self-contained HTML page to FILE")
	quiet := fs.Bool("quiet", false, "no progress line, even on a terminal")
	fs.DurationVar(&cfg.SampleEvery, "sample-every", time.Second, "how often to read the server's metrics during the run for the report's server timeline; 0 = never (benchmarks: each read is work for the server)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError("loadtest: takes no arguments, got %q", pos)
	}
	cfg.URL, cfg.Token, cfg.Insecure = strings.TrimSpace(srv.url), srv.token, srv.insecure
	if cfg.ServerPIDs, err = serverPIDs(*pids); err != nil {
		return usageError("loadtest: --server-pid: %v", err)
	}
	if cfg.SourceAddrs, err = sourceAddrs(*sources); err != nil {
		return usageError("loadtest: --source-addrs: %v", err)
	}
	if cfg.SampleEvery == 0 {
		cfg.SampleEvery = -1 // never; the library's zero means its default
	}
	if err := cfg.Check(); err != nil {
		return usageError("loadtest: %v", err)
	}
	if env.Terminal && !*quiet {
		cfg.Progress = env.Stdout
	}
	var html *os.File
	if *htmlPath != "" {
		// Open it now: a bad path should not cost a whole run.
		if html, err = os.Create(*htmlPath); err != nil {
			return err
		}
		defer html.Close()
	}
	rep, err := loadtest.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		err = rep.WriteJSON(env.Stdout)
	} else {
		err = rep.WriteText(env.Stdout)
	}
	if err != nil {
		return err
	}
	if html != nil {
		if err := rep.WriteHTML(html); err != nil {
			return err
		}
		if err := html.Close(); err != nil {
			return err
		}
	}
	if v := rep.Verification; !v.OK() {
		return &ExitError{Code: 1, Err: fmt.Errorf("loadtest: verification failed: %d lost, %d duplicated, %d corrupt, %d misrouted, %d foreign",
			v.Lost, v.Duplicated, v.Corrupt, v.Misrouted, v.Foreign)}
	}
	return nil
}

// sourceAddrs reads --source-addrs: "" (none), a count N (127.0.0.1 to
// 127.0.0.N) or a comma-separated list of IP addresses.
func sourceAddrs(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 254 {
			return nil, fmt.Errorf("a count must be 1 to 254, got %d", n)
		}
		addrs := make([]string, n)
		for i := range addrs {
			addrs[i] = fmt.Sprintf("127.0.0.%d", i+1)
		}
		return addrs, nil
	}
	var addrs []string
	for a := range strings.SplitSeq(s, ",") {
		a = strings.TrimSpace(a)
		if net.ParseIP(a) == nil {
			return nil, fmt.Errorf("%q is not an IP address", a)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// serverPIDs parses --server-pid: "" or process ids separated by commas.
func serverPIDs(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		pid, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("%q is not a process id", f)
		}
		out = append(out, pid)
	}
	return out, nil
}
