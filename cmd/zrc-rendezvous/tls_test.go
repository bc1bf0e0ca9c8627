package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

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
	waitFor(t, func() bool {
		return strings.Contains(metricsTextTLS(t, old, base), "zrc_rendezvous_waiting_long_polls 1\n")
	})

	copyFile(t, b.CertPath, a.CertPath)
	copyFile(t, b.KeyPath, a.KeyPath)
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(s.log(), `"msg":"TLS certificate reloaded"`) })

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
	waitFor(t, func() bool {
		return strings.Contains(s.log(), `"msg":"reload refused; keeping the running config"`)
	})
	if !strings.Contains(s.log(), "tls_cert_path "+a.CertPath) {
		t.Errorf("the refusal does not name the pair:\n%s", s.log())
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
