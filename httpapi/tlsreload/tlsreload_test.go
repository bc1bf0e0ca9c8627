package tlsreload_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/tlsreload"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/tlsreload/tlstest"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	a := tlstest.Write(t, dir, "a", time.Time{})
	b := tlstest.Write(t, dir, "b", time.Time{})
	old := tlstest.Write(t, dir, "old", time.Now().Add(-time.Minute))
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate\n"), 0o600)

	if c, err := tlsreload.Load(a.CertPath, a.KeyPath, time.Now()); err != nil || !c.Leaf.Equal(a.Cert) {
		t.Fatalf("Load(a) = %v, %v; want a's certificate", c, err)
	}
	bad := []struct {
		name, cert, key, want string
	}{
		{"missing certificate", filepath.Join(dir, "none.crt"), a.KeyPath, "no such file"},
		{"missing key", a.CertPath, filepath.Join(dir, "none.key"), "no such file"},
		{"key of another certificate", a.CertPath, b.KeyPath, "private key does not match public key"},
		{"not PEM", garbage, a.KeyPath, "failed to find any PEM data"},
		{"expired", old.CertPath, old.KeyPath, "certificate expired at"},
		{"empty path", "", a.KeyPath, "both paths must be set"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tlsreload.Load(tt.cert, tt.key, time.Now())
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "tls_cert_path") {
				t.Fatalf("Load = %v; want an error naming tls_cert_path and saying %q", err, tt.want)
			}
		})
	}
}

// tlsServer is an httpapi server on HTTPS, as cmd runs it.
type tlsServer struct {
	addr  string
	certs *tlsreload.Certs
	errs  *tlsreload.ErrorLog
	set   *metrics.Set
	logs  *observer.ObservedLogs
	// release lets every request to /wait return.
	release chan struct{}
}

func startTLS(t *testing.T, p tlstest.Pair) *tlsServer {
	t.Helper()
	cert, err := tlsreload.Load(p.CertPath, p.KeyPath, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	s := &tlsServer{set: metrics.NewSet(), logs: logs, release: make(chan struct{})}
	s.certs = tlsreload.New(cert, zap.New(core))
	s.errs = tlsreload.NewErrorLog(zap.New(core), s.set, time.Hour)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/wait", func(w http.ResponseWriter, r *http.Request) {
		<-s.release
		io.WriteString(w, "waited")
	})
	srv := httpapi.NewServer(mux, context.Background(), httpapi.ServerOptions{LongPollMax: time.Minute, ErrorLog: s.errs.Logger()})
	srv.TLSConfig = s.certs.ServerConfig()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return s
}

// client trusts roots and speaks HTTP/2 when the server offers it.
func client(roots ...tlstest.Pair) *http.Client {
	pool := x509.NewCertPool()
	for _, p := range roots {
		pool.AddCert(p.Cert)
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
	}}
}

// get fetches path and reports the body, the protocol, the certificate the
// server showed and whether the connection was reused.
type got struct {
	body, proto string
	cert        *x509.Certificate
	reused      bool
}

func (s *tlsServer) get(t *testing.T, c *http.Client, path string) got {
	t.Helper()
	var g got
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { g.reused = info.Reused },
	})
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+s.addr+path, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	g.body, g.proto, g.cert = string(b), resp.Proto, resp.TLS.PeerCertificates[0]
	return g
}

// R8.1, R8.5: HTTPS with HTTP/2 through ALPN, and HTTP/1.1 for clients
// that ask for it.
func TestHTTP2Negotiated(t *testing.T) {
	p := tlstest.Write(t, t.TempDir(), "a", time.Time{})
	s := startTLS(t, p)
	if g := s.get(t, client(p), "/"); g.proto != "HTTP/2.0" || g.body != "ok" {
		t.Fatalf("got %s %q; want HTTP/2.0 ok", g.proto, g.body)
	}
	conn, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: p.Pool(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if np := conn.ConnectionState().NegotiatedProtocol; np != "http/1.1" {
		t.Fatalf("ALPN with http/1.1 only negotiated %q", np)
	}
}

// R8.3: TLS 1.2 at least; TLS 1.0 and 1.1 handshakes fail, and each
// failure is counted.
func TestOldTLSRefused(t *testing.T) {
	p := tlstest.Write(t, t.TempDir(), "a", time.Time{})
	s := startTLS(t, p)
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		conn, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: p.Pool(), MinVersion: v, MaxVersion: v})
		if err == nil {
			conn.Close()
			t.Fatalf("%s handshake succeeded; want refused", tls.VersionName(v))
		}
		// The server refuses: the client offered the version and got the
		// server's protocol_version alert.
		if !strings.Contains(err.Error(), "protocol version not supported") {
			t.Errorf("%s handshake: %v; want the server's protocol version alert", tls.VersionName(v), err)
		}
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		conn, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: p.Pool(), MinVersion: v, MaxVersion: v})
		if err != nil {
			t.Fatalf("%s handshake: %v", tls.VersionName(v), err)
		}
		conn.Close()
	}
	waitCounter(t, s.set, "zrc_rendezvous_tls_handshake_errors_total", 2)
}

// R8.4: a reload serves the new certificate to new connections, while a
// connection opened before it keeps working — including a request that
// was waiting across the swap — and a broken pair keeps the old one.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	a := tlstest.Write(t, dir, "a", time.Time{})
	b := tlstest.Write(t, dir, "b", time.Time{})
	s := startTLS(t, a)

	old := client(a, b)
	if g := s.get(t, old, "/"); !g.cert.Equal(a.Cert) {
		t.Fatalf("before reload the server showed %s; want a", g.cert.Subject)
	}
	waiting := make(chan got, 1)
	go func() { waiting <- s.get(t, old, "/wait") }()

	commit, err := s.certs.Prepare(b.CertPath, b.KeyPath)
	if err != nil {
		t.Fatal(err)
	}
	commit()
	if n := s.logs.FilterMessage("TLS certificate reloaded").Len(); n != 1 {
		t.Errorf("%d reload lines; want 1", n)
	}

	if g := s.get(t, client(a, b), "/"); !g.cert.Equal(b.Cert) || g.reused {
		t.Fatalf("new connection after reload: certificate %s (reused %v); want b on a new connection", g.cert.Subject, g.reused)
	}
	g := s.get(t, old, "/")
	if !g.reused || !g.cert.Equal(a.Cert) || g.body != "ok" {
		t.Fatalf("old connection after reload: reused %v, certificate %s, body %q; want the same connection, still a, ok",
			g.reused, g.cert.Subject, g.body)
	}
	close(s.release)
	if w := <-waiting; w.body != "waited" || !w.cert.Equal(a.Cert) {
		t.Fatalf("request waiting across the reload got %q on %s; want waited on a", w.body, w.cert.Subject)
	}

	// A broken pair is refused and changes nothing.
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600)
	for _, paths := range [][2]string{{garbage, b.KeyPath}, {b.CertPath, a.KeyPath}, {filepath.Join(dir, "gone.crt"), b.KeyPath}} {
		if commit, err := s.certs.Prepare(paths[0], paths[1]); err == nil || commit != nil {
			t.Fatalf("Prepare(%s, %s) = %v; want refused", paths[0], paths[1], err)
		}
	}
	if _, err := s.certs.Prepare("", ""); !errors.Is(err, tlsreload.ErrNeedsRestart) {
		t.Fatalf("Prepare without paths = %v; want ErrNeedsRestart", err)
	}
	if g := s.get(t, client(a, b), "/"); !g.cert.Equal(b.Cert) {
		t.Fatalf("after refused reloads the server showed %s; want b", g.cert.Subject)
	}
}

// R8.6: a flood of failed handshakes makes one log line, with the count,
// and no client address; other net/http lines pass through.
func TestHandshakeErrorsAggregated(t *testing.T) {
	p := tlstest.Write(t, t.TempDir(), "a", time.Time{})
	s := startTLS(t, p)
	const n = 50
	for range n {
		conn, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte("\x16\x03\x01\x00\x05hello")) // a broken ClientHello
		io.Copy(io.Discard, conn)                       // until the server hangs up
		conn.Close()
	}
	waitCounter(t, s.set, "zrc_rendezvous_tls_handshake_errors_total", n)
	s.errs.Close()
	for _, ex := range s.aggregated(t, "TLS handshakes failed", n) {
		if strings.Contains(ex, "127.0.0.1") {
			t.Errorf("example %q carries the client address", ex)
		}
	}

	s.errs.Logger().Print("http: Accept error: too many open files; retrying in 5ms")
	if e := s.logs.FilterMessage("http: Accept error: too many open files; retrying in 5ms").All(); len(e) != 1 || e[0].Level != zap.WarnLevel {
		t.Errorf("other net/http line: %+v; want it once at warn", e)
	}
}

// The expiry gauge follows the certificate in force.
func TestExpiryMetric(t *testing.T) {
	dir := t.TempDir()
	a := tlstest.Write(t, dir, "a", time.Now().Add(48*time.Hour))
	b := tlstest.Write(t, dir, "b", time.Now().Add(96*time.Hour))
	s := startTLS(t, a)
	s.certs.RegisterMetrics(s.set)
	const name = "zrc_rendezvous_tls_certificate_expiry_timestamp_seconds"
	if got := gauge(t, s.set, name); got != float64(a.Cert.NotAfter.Unix()) {
		t.Fatalf("%s = %v; want %d", name, got, a.Cert.NotAfter.Unix())
	}
	commit, err := s.certs.Prepare(b.CertPath, b.KeyPath)
	if err != nil {
		t.Fatal(err)
	}
	commit()
	if got := gauge(t, s.set, name); got != float64(b.Cert.NotAfter.Unix()) {
		t.Fatalf("%s after reload = %v; want %d", name, got, b.Cert.NotAfter.Unix())
	}
}

func gauge(t *testing.T, set *metrics.Set, name string) float64 {
	t.Helper()
	var sb strings.Builder
	set.WritePrometheus(&sb)
	for _, line := range strings.Split(sb.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("%s not exported", name)
	return 0
}

// waitCounter waits until the counter reaches want: net/http logs a failed
// handshake on the connection's goroutine, after the client saw it fail.
func waitCounter(t *testing.T, set *metrics.Set, name string, want float64) {
	t.Helper()
	polltest.Until(t, fmt.Sprintf("%s = %v", name, want), func() bool { return gauge(t, set, name) == want })
}

// R8.6: connections that break HTTP/2 after its preface are counted and
// logged in aggregate, and no line, of any kind, names a client address.
func TestHTTP2ErrorsAggregated(t *testing.T) {
	p := tlstest.Write(t, t.TempDir(), "a", time.Time{})
	s := startTLS(t, p)
	const n = 20
	for range n {
		conn, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: p.Pool(), NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		// The client preface, then bytes that are not a SETTINGS frame.
		io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		io.WriteString(conn, "\x00\x00\x04\x01\x00\x00\x00\x00\x00garbage")
		readUntilGoAway(t, conn)
		conn.Close()
	}
	waitCounter(t, s.set, "zrc_rendezvous_http2_errors_total", n)
	if lines := s.logs.FilterMessage("HTTP/2 connections failed").All(); len(lines) != 1 {
		t.Fatalf("%d log lines within the interval for %d failures; want 1 (the first, at once)", len(lines), n)
	}
	s.errs.Close()
	for _, ex := range s.aggregated(t, "HTTP/2 connections failed", n) {
		if !strings.HasPrefix(ex, "http2: ") {
			t.Errorf("example %q; want net/http's HTTP/2 line", ex)
		}
	}

	s.errs.Logger().Print("http: panic serving 192.0.2.7:51234: boom")
	s.errs.Logger().Print("http2: panic serving [2001:db8::7]:51234: boom")
	s.errs.Logger().Print("http: read tcp 127.0.0.1:8443->127.0.0.1:51234: i/o timeout")
	for _, want := range []string{"http: panic serving <address>: boom", "http2: panic serving <address>: boom",
		"http: read tcp <address>-><address>: i/o timeout"} {
		if e := s.logs.FilterMessage(want).All(); len(e) != 1 || e[0].Level != zap.WarnLevel {
			t.Errorf("line %q: %+v; want it once at warn", want, e)
		}
	}
	for _, e := range s.logs.All() {
		b, _ := json.Marshal(e.ContextMap())
		for _, addr := range []string{"127.0.0.1", "192.0.2.7", "2001:db8::7"} {
			if strings.Contains(e.Message, addr) || strings.Contains(string(b), addr) {
				t.Errorf("log line %q %s carries a client address", e.Message, b)
			}
		}
	}
}

// readUntilGoAway reads HTTP/2 frames until the server's GOAWAY, which it
// sends once it has found the connection broken. (Reading until it hangs
// up would wait out its GOAWAY grace period.)
func readUntilGoAway(t *testing.T, conn net.Conn) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [9]byte
	for {
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			t.Fatalf("reading frames: %v; want a GOAWAY", err)
		}
		if hdr[3] == 0x7 {
			return
		}
		n := int64(hdr[0])<<16 | int64(hdr[1])<<8 | int64(hdr[2])
		if _, err := io.CopyN(io.Discard, conn, n); err != nil {
			t.Fatalf("reading frames: %v; want a GOAWAY", err)
		}
	}
}

// aggregated checks that n events logged as msg made two lines, the first
// at once and the rest at the interval's end (or Close), whose counts add
// up to n, and returns their examples.
func (s *tlsServer) aggregated(t *testing.T, msg string, n int64) []string {
	t.Helper()
	lines := s.logs.FilterMessage(msg).All()
	if len(lines) != 2 {
		t.Fatalf("%d %q lines for %d events; want 2 (the first at once, the rest at the interval's end)", len(lines), msg, n)
	}
	var total int64
	var examples []string
	for _, l := range lines {
		total += l.ContextMap()["count"].(int64)
		examples = append(examples, l.ContextMap()["example"].(string))
	}
	if total != n {
		t.Errorf("%q lines count %d events; want %d", msg, total, n)
	}
	return examples
}
