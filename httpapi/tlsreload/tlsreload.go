// Package tlsreload serves HTTPS for zrc-rendezvous (R8). The certificate
// pair in force sits behind an atomic pointer that tls.Config's
// GetCertificate reads at every handshake, so a reload swaps the pair for
// new connections while every open connection, and every long-poll waiting
// on one, keeps the session it has (R8.4). A pair is loaded and checked in
// full before it can be swapped in: a missing or broken new pair leaves the
// old one serving.
package tlsreload

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"
)

// ErrNeedsRestart refuses a reload that would switch between HTTP and
// HTTPS: the listener is one or the other for the life of the process.
var ErrNeedsRestart = errors.New("switching between HTTP and HTTPS (setting or clearing tls_cert_path and tls_key_path) needs a restart")

// Load reads the PEM pair and checks it: the key must match the
// certificate, and the certificate must not have expired at now. The
// error names both paths.
func Load(certPath, keyPath string, now time.Time) (*tls.Certificate, error) {
	fail := func(err error) (*tls.Certificate, error) {
		return nil, fmt.Errorf("TLS pair tls_cert_path %s, tls_key_path %s: %w", certPath, keyPath, err)
	}
	if certPath == "" || keyPath == "" {
		return fail(errors.New("both paths must be set"))
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return fail(err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		// Go fills Leaf in itself unless GODEBUG x509keypairleaf=0.
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fail(err)
		}
		cert.Leaf = leaf
	}
	if now.After(leaf.NotAfter) {
		return fail(fmt.Errorf("certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339)))
	}
	return &cert, nil
}

// Certs is the pair in force. Its methods are safe for concurrent use.
type Certs struct {
	cur atomic.Pointer[tls.Certificate] // never nil after New
	log *zap.Logger
}

// New serves cert, which Load returned; log (nil: none) gets a line per
// reload.
func New(cert *tls.Certificate, log *zap.Logger) *Certs {
	if cert == nil || cert.Leaf == nil {
		panic("BUG: tlsreload.New needs a certificate from Load")
	}
	if log == nil {
		log = zap.NewNop()
	}
	c := &Certs{log: log}
	c.cur.Store(cert)
	return c
}

// Certificate returns the pair in force.
func (c *Certs) Certificate() *tls.Certificate { return c.cur.Load() }

// GetCertificate is tls.Config.GetCertificate: every handshake takes the
// pair in force at that moment.
func (c *Certs) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// ServerConfig is the TLS configuration of the listener: TLS 1.2 at least
// (R8.3) and the certificate through GetCertificate. http.Server.ServeTLS
// adds "h2" and "http/1.1" to NextProtos, so HTTP/2 is negotiated through
// ALPN (R8.5).
func (c *Certs) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.GetCertificate,
	}
}

// Prepare loads and checks the pair at the given paths, without serving
// it, and returns the swap to make: the two halves of a reload hook. Empty
// paths mean plain HTTP, which needs a restart (ErrNeedsRestart).
func (c *Certs) Prepare(certPath, keyPath string) (commit func(), err error) {
	if certPath == "" && keyPath == "" {
		return nil, ErrNeedsRestart
	}
	cert, err := Load(certPath, keyPath, time.Now())
	if err != nil {
		return nil, err
	}
	return func() { c.swap(cert) }, nil
}

// swap serves cert to new handshakes from now on and logs the change.
func (c *Certs) swap(cert *tls.Certificate) {
	old := c.cur.Swap(cert)
	if bytes.Equal(old.Leaf.Raw, cert.Leaf.Raw) {
		c.log.Info("TLS certificate unchanged", Fields(cert)...)
		return
	}
	c.log.Info("TLS certificate reloaded", Fields(cert)...)
}

// Fields describe a certificate for a log line: subject, DNS names,
// validity end and SHA-256 fingerprint.
func Fields(cert *tls.Certificate) []zap.Field {
	leaf := cert.Leaf
	sum := sha256.Sum256(leaf.Raw)
	return []zap.Field{
		zap.String("subject", leaf.Subject.String()),
		zap.Strings("dns_names", leaf.DNSNames),
		zap.Time("not_after", leaf.NotAfter),
		zap.String("sha256", hex.EncodeToString(sum[:])),
	}
}

// RegisterMetrics exposes when the certificate in force expires, in Unix
// seconds, so an alert can warn before it does.
func (c *Certs) RegisterMetrics(set *metrics.Set) {
	if set == nil {
		return
	}
	set.NewGauge("zrc_rendezvous_tls_certificate_expiry_timestamp_seconds", func() float64 {
		return float64(c.cur.Load().Leaf.NotAfter.Unix())
	})
}
