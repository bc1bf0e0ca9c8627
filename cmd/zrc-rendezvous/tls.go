package main

import (
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/conf"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/tlsreload"
)

// netHTTPLogInterval bounds how often the aggregated lines of net/http's
// error log (failed TLS handshakes) are written (R8.6).
const netHTTPLogInterval = 10 * time.Second

// setupTLS loads the certificate pair when tls_cert_path and tls_key_path
// are set (R8.1); nil without them (plain HTTP, R8.2). A pair that cannot
// be used stops the start.
func setupTLS(cfg conf.Config, log *zap.Logger, set *metrics.Set) (*tlsreload.Certs, error) {
	if cfg.TLSCertPath == "" && cfg.TLSKeyPath == "" {
		return nil, nil
	}
	cert, err := tlsreload.Load(cfg.TLSCertPath, cfg.TLSKeyPath, time.Now())
	if err != nil {
		return nil, err
	}
	log.Info("TLS certificate loaded", tlsreload.Fields(cert)...)
	certs := tlsreload.New(cert, log)
	certs.RegisterMetrics(set)
	return certs, nil
}

// pairReloader keeps in force the TLS pair the running config names
// (R8.4). A pair that cannot be loaded (missing, broken, expired, a key
// that does not match) leaves the pair in force serving and is tried again
// at every tick of the file watcher until it loads, so a pair fixed or
// renewed after a failed reload is picked up without a signal. An explicit
// reload logs its failure; a retry logs only a failure unlike the last, so
// a pair that stays broken writes one line, not one per tick.
type pairReloader struct {
	certs *tlsreload.Certs
	log   *zap.Logger

	mu                sync.Mutex
	certPath, keyPath string // the pair the running config names
	pending           bool   // that pair failed to load; an older one serves
	failure           string // the failure last logged
}

// newPairReloader starts with the pair setupTLS loaded; nil without TLS.
func newPairReloader(certs *tlsreload.Certs, cfg conf.Config, log *zap.Logger) *pairReloader {
	if certs == nil {
		return nil
	}
	return &pairReloader{certs: certs, log: log, certPath: cfg.TLSCertPath, keyPath: cfg.TLSKeyPath}
}

// set names the pair to serve and loads it. It reports whether that pair
// is now in force.
func (p *pairReloader) set(certPath, keyPath string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.certPath, p.keyPath, p.failure = certPath, keyPath, ""
	return p.loadLocked()
}

// retry loads the named pair again if it failed to load; nil does nothing.
func (p *pairReloader) retry() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending {
		p.loadLocked()
	}
}

func (p *pairReloader) loadLocked() bool {
	commit, err := p.certs.Prepare(p.certPath, p.keyPath)
	if err != nil {
		p.pending = true
		if msg := err.Error(); msg != p.failure {
			p.failure = msg
			p.log.Error("TLS pair not loaded; the pair in force keeps serving and this one is retried until it loads", zap.Error(err))
		}
		return false
	}
	p.pending, p.failure = false, ""
	commit()
	return true
}

// tlsHook reloads the certificate pair (R8.4) on commit, through p: a
// pair that cannot be loaded keeps the one in force serving and is retried
// (pairReloader), without holding back the rest of the reload, so that a
// revoked token stops working even while the pair on disk is broken;
// failed then counts the failure. Connections already open keep their
// session, so no connection and no waiting long-poll is dropped. Switching
// between HTTP and HTTPS needs a restart and refuses the reload, rather
// than leave the running config claiming what the listener does not do.
func tlsHook(p *pairReloader, failed func()) reloadHook {
	return func(next conf.Config) (func(), error) {
		on := next.TLSCertPath != "" || next.TLSKeyPath != ""
		if on != (p != nil) {
			return nil, tlsreload.ErrNeedsRestart
		}
		if p == nil {
			return nil, nil
		}
		return func() {
			if !p.set(next.TLSCertPath, next.TLSKeyPath) {
				failed()
			}
		}, nil
	}
}
