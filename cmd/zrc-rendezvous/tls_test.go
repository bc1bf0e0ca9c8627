package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/zrc-rendezvous/zrc-rendezvous/conf"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/tlsreload"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/tlsreload/tlstest"
)

// httpsClient trusts roots and speaks HTTP/2; each has its own connections.
func httpsClient(roots ...tlstest.Pair) *http.Client {
	pool := x509.NewCertPool()
	for _, p := range roots {
		pool.AddCert(p.Cert)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// R8.1, R8.4, R8.5 through the real process: HTTPS only, HTTP/2; SIGHUP
// swaps in a renewed pair for new connections while a long-poll waiting on
// an old connection is served on it; a broken pair is refused and the
// renewed one keeps serving.
func TestProcessTLSReload(t *testing.T) {
	dir := t.TempDir()
	a := tlstest.Write(t, dir, "a", time.Time{})
	b := tlstest.Write(t, dir, "b", time.Time{})
	s := startServer(t, nil, "--tls-cert-path", a.CertPath, "--tls-key-path", a.KeyPath)
	base := "https://" + strings.TrimPrefix(s.url, "http://")
	if !strings.Contains(s.log(), `"tls":true`) {
		t.Fatalf("ready line does not say tls:\n%s", s.log())
	}

	// Plain HTTP on the HTTPS port is refused.
	if resp, err := http.Get(s.url + "/health"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTPS") {
			t.Fatalf("plain HTTP: %d %q; want 400 from net/http", resp.StatusCode, body)
		}
	}

	old := httpsClient(a, b)
	type answer struct {
		status int
		body   string
		proto  string
		cert   *x509.Certificate
	}
	parked := make(chan answer, 1)
	go func() {
		resp, err := old.Get(base + "/v1/mailbox/" + rid + "?wait_ms=30000")
		if err != nil {
			parked <- answer{body: err.Error()}
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		parked <- answer{resp.StatusCode, string(body), resp.Proto, resp.TLS.PeerCertificates[0]}
	}()
	polltest.Until(t, "a long-poll waits", func() bool {
		return strings.Contains(metricsTextTLS(t, old, base), "zrc_rendezvous_waiting_long_polls 1\n")
	})

	copyFile(t, b.CertPath, a.CertPath)
	copyFile(t, b.KeyPath, a.KeyPath)
	s.cmd.Process.Signal(syscall.SIGHUP)
	polltest.Until(t, "the certificate is reloaded", func() bool { return strings.Contains(s.log(), `"msg":"TLS certificate reloaded"`) })

	resp, err := httpsClient(a, b).Post(base+"/v1/mailbox/"+rid, "", strings.NewReader("after the swap"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !resp.TLS.PeerCertificates[0].Equal(b.Cert) || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("new connection after SIGHUP: %d with %s; want 202 with b", resp.StatusCode, resp.TLS.PeerCertificates[0].Subject)
	}
	select {
	case got := <-parked:
		if got.status != http.StatusOK || got.body != "after the swap" || got.proto != "HTTP/2.0" || !got.cert.Equal(a.Cert) {
			t.Fatalf("long-poll across the reload: %d %q %s with %v; want 200 with the message, HTTP/2.0, on its connection with a",
				got.status, got.body, got.proto, got.cert)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long-poll waiting across the reload got no answer")
	}

	os.WriteFile(a.CertPath, []byte("not a certificate"), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	polltest.Until(t, "the failed load is logged", func() bool { return strings.Contains(s.log(), `"msg":"`+pairNotLoaded+`"`) })
	if !strings.Contains(s.log(), "tls_cert_path "+a.CertPath) {
		t.Errorf("the failure does not name the pair:\n%s", s.log())
	}
	resp, err = httpsClient(a, b).Get(base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !resp.TLS.PeerCertificates[0].Equal(b.Cert) {
		t.Fatalf("after a refused reload the server showed %s; want b", resp.TLS.PeerCertificates[0].Subject)
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("exit status %d; want 0", code)
	}
}

func metricsTextTLS(t *testing.T, c *http.Client, base string) string {
	t.Helper()
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A pair that cannot be used stops the start with status 2, naming it.
func TestProcessTLSBadPairExits2(t *testing.T) {
	dir := t.TempDir()
	a := tlstest.Write(t, dir, "a", time.Time{})
	b := tlstest.Write(t, dir, "b", time.Time{})
	out, err := exec.Command(binary, "--listen-port", "0", "--tls-cert-path", a.CertPath, "--tls-key-path", b.KeyPath).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v; want status 2\n%s", err, out)
	}
	if !strings.Contains(string(out), "tls_cert_path "+a.CertPath) || !strings.Contains(string(out), "does not match") {
		t.Fatalf("output does not explain the bad pair:\n%s", out)
	}
}

// max_connections through the real process: past the cap a new
// connection is answered 503 overloaded and counted, and the connections
// under it work; once the one held is idle between requests, it gives way
// to a new one instead.
func TestProcessConnectionCap(t *testing.T) {
	s := startServer(t, nil, "--max-connections", "1")
	addr := strings.TrimPrefix(s.url, "http://")
	// Connected, no request sent yet: counted, and not idle.
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	get := func(c net.Conn, br *bufio.Reader, path string) (int, string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/health", nil)
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		t.Fatalf("past the cap: %v; want a 503 answer", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "5" || !strings.Contains(string(body), `"error":"overloaded"`) {
		t.Fatalf("past the cap: %d %s; want 503 overloaded with Retry-After 5", resp.StatusCode, body)
	}
	br := bufio.NewReader(held)
	if code, body := get(held, br, "/health"); code != 503 || !strings.Contains(body, `"open_connections":1`) {
		t.Fatalf("/health at the cap: %d %s; want 503 with open_connections 1", code, body)
	}
	_, metrics := get(held, br, "/metrics")
	for _, want := range []string{"zrc_rendezvous_open_connections 1\n", "zrc_rendezvous_max_connections 1\n", "zrc_rendezvous_rejected_connections_total 1\n"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// held is idle now: a new connection closes it and is served. (The
	// server marks it idle just after writing its answer: a connection
	// that comes first is refused, so try again.)
	var next net.Conn
	var nbr *bufio.Reader
	for deadline := time.Now().Add(5 * time.Second); ; {
		if next, err = net.Dial("tcp", addr); err != nil {
			t.Fatal(err)
		}
		defer next.Close()
		nbr = bufio.NewReader(next)
		code, body := get(next, nbr, "/health")
		if code == 503 && strings.Contains(body, `"status":"overloaded"`) {
			break // /health's own answer at the cap: admitted
		}
		if time.Now().After(deadline) {
			t.Fatalf("new connection with the held one idle: %d %s; want /health's own 503 overloaded", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("the idle connection: read %d, %v; want EOF", n, err)
	}
	if _, metrics = get(next, nbr, "/metrics"); !strings.Contains(metrics, "zrc_rendezvous_idle_connections_closed_total 1\n") {
		t.Errorf("metrics lack zrc_rendezvous_idle_connections_closed_total 1")
	}
}

// pairNotLoaded is the error line of a TLS pair that failed to load.
const pairNotLoaded = "TLS pair not loaded; the pair in force keeps serving and this one is retried until it loads"

// R5.6, R8.4 through the real process: while the pair on disk is broken, a
// reload still revokes a token (403 at once), the old pair keeps serving,
// the failure is counted and logged once, /health stays healthy; a good
// pair written afterwards is served without another signal.
func TestProcessBrokenTLSPairDoesNotHoldBackTokens(t *testing.T) {
	dir := t.TempDir()
	a := tlstest.Write(t, dir, "a", time.Time{})
	b := tlstest.Write(t, dir, "b", time.Time{})
	file := filepath.Join(dir, "config.toml")
	config := func(tokens string) {
		t.Helper()
		body := fmt.Sprintf("auth_mode = \"server_wide\"\nauth_tokens = [%s]\ntls_cert_path = %q\ntls_key_path = %q\n", tokens, a.CertPath, a.KeyPath)
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	config(`"keep-token", "revoked-token"`)
	s := startServer(t, []string{"ZRC_CONFIG_PATH=" + file})
	base := "https://" + strings.TrimPrefix(s.url, "http://")
	client := httpsClient(a, b)
	// A connection per request, so each shows the pair in force now.
	client.Transport.(*http.Transport).DisableKeepAlives = true
	post := func(token string) (int, string, *x509.Certificate) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/v1/mailbox/"+rid, strings.NewReader("x"))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body), resp.TLS.PeerCertificates[0]
	}
	get := func(path string) (string, *x509.Certificate) {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return fmt.Sprintf("%d %s", resp.StatusCode, body), resp.TLS.PeerCertificates[0]
	}
	if m, _ := get("/metrics"); !strings.Contains(m, "\nzrc_rendezvous_reload_failures_total 0\n") {
		t.Fatalf("metrics at start lack zrc_rendezvous_reload_failures_total 0")
	}
	if code, _, _ := post("revoked-token"); code != http.StatusAccepted {
		t.Fatalf("token before the revocation: %d; want 202", code)
	}

	os.WriteFile(a.CertPath, []byte("not a certificate"), 0o600)
	config(`"keep-token"`)
	s.cmd.Process.Signal(syscall.SIGHUP)
	// The changed config file is reloaded a second time by the watcher.
	polltest.Until(t, "the reload is logged", func() bool {
		l := s.log()
		return strings.Contains(l, `"msg":"reloaded config","trigger":"SIGHUP"`) &&
			strings.Contains(l, `"msg":"reloaded config","trigger":"file changed"`)
	})

	code, body, cert := post("revoked-token")
	if want := `{"error":"forbidden","message":"credentials refused"}`; code != http.StatusForbidden || strings.TrimSpace(body) != want {
		t.Fatalf("revoked token while the pair is broken: %d %s; want 403 %s", code, body, want)
	}
	if !cert.Equal(a.Cert) {
		t.Fatalf("served %s while the pair on disk is broken; want a, the pair in force", cert.Subject)
	}
	if code, _, _ := post("keep-token"); code != http.StatusAccepted {
		t.Fatalf("kept token: %d; want 202", code)
	}
	if health, _ := get("/health"); !strings.HasPrefix(health, `200 {"status":"healthy"`) {
		t.Fatalf("/health after the failed pair: %s; want 200 healthy", health)
	}
	if m, _ := get("/metrics"); !strings.Contains(m, "\nzrc_rendezvous_reload_failures_total 2\n") {
		t.Fatalf("metrics after two reloads with a broken pair lack zrc_rendezvous_reload_failures_total 2")
	}

	// The watcher retries the pair at its next tick; no SIGHUP.
	copyFile(t, b.KeyPath, a.KeyPath)
	copyFile(t, b.CertPath, a.CertPath)
	polltest.Until(t, "the new certificate is served", func() bool { _, c := get("/health"); return c.Equal(b.Cert) })
	logs := s.log()
	// One per reload; the retries at every tick in between, and while
	// the key was new and the certificate not yet (the same failure: no
	// certificate in the file), add none.
	if n := strings.Count(logs, pairNotLoaded); n != 2 {
		t.Errorf("%d failure lines for the pair; want 2, one per reload:\n%s", n, logs)
	}
	if !strings.Contains(logs, `"msg":"TLS certificate reloaded"`) {
		t.Errorf("the pair picked up by the retry was not logged:\n%s", logs)
	}
	if strings.Contains(logs, "keep-token") || strings.Contains(logs, "revoked-token") {
		t.Fatalf("logs carry a token:\n%s", logs)
	}
}

// R8.4: a pair that fails to load keeps the one in force, is retried at
// every idle tick and logged once per distinct failure; a good pair is
// taken at the next retry, after which retries read nothing. Switching
// between HTTP and HTTPS refuses the reload.
func TestPairReloaderRetriesQuietly(t *testing.T) {
	dir := t.TempDir()
	a := tlstest.Write(t, dir, "a", time.Time{})
	b := tlstest.Write(t, dir, "b", time.Time{})
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(core)
	cert, err := tlsreload.Load(a.CertPath, a.KeyPath, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certs := tlsreload.New(cert, log)
	cfg := conf.Defaults()
	cfg.TLSCertPath, cfg.TLSKeyPath = a.CertPath, a.KeyPath
	p := newPairReloader(certs, cfg, log)
	failures := 0
	hook := tlsHook(p, func() { failures++ })
	served := func() *x509.Certificate { return certs.Certificate().Leaf }

	os.WriteFile(a.CertPath, []byte("not a certificate"), 0o600)
	commit, err := hook(cfg)
	if err != nil {
		t.Fatalf("hook with a broken pair: %v; want no error, the rest of the reload goes on", err)
	}
	commit()
	for range 3 {
		p.retry()
	}
	if n := logs.FilterMessage(pairNotLoaded).Len(); n != 1 || failures != 1 || !served().Equal(a.Cert) {
		t.Fatalf("after a failed reload and 3 retries: %d failure lines, %d failures counted, serving %s; want 1, 1, a",
			n, failures, served().Subject)
	}
	os.WriteFile(a.CertPath, nil, 0o600) // the same failure: no PEM data
	p.retry()
	os.Remove(a.KeyPath) // another failure
	p.retry()
	if n := logs.FilterMessage(pairNotLoaded).Len(); n != 2 {
		t.Fatalf("%d failure lines after a new failure; want 2", n)
	}
	copyFile(t, b.CertPath, a.CertPath)
	copyFile(t, b.KeyPath, a.KeyPath)
	p.retry()
	if !served().Equal(b.Cert) || logs.FilterMessage("TLS certificate reloaded").Len() != 1 {
		t.Fatalf("after a good pair and a retry: serving %s; want b, logged once", served().Subject)
	}
	p.retry()
	if logs.FilterMessage("TLS certificate unchanged").Len() != 0 {
		t.Fatal("a retry with no failure pending read the pair again")
	}
	if failures != 1 {
		t.Fatalf("retries counted %d failures; want only the reload's 1", failures)
	}

	off := cfg
	off.TLSCertPath, off.TLSKeyPath = "", ""
	if _, err := hook(off); !errors.Is(err, tlsreload.ErrNeedsRestart) {
		t.Fatalf("turning TLS off: %v; want ErrNeedsRestart", err)
	}
	if _, err := tlsHook(nil, nil)(cfg); !errors.Is(err, tlsreload.ErrNeedsRestart) {
		t.Fatalf("turning TLS on: %v; want ErrNeedsRestart", err)
	}
}
