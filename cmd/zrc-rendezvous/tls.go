package main

import (
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

// tlsHook reloads the certificate pair (R8.4): it loads and checks the
// pair named by the new config and swaps it in on commit; a missing or
// broken pair refuses the reload, and the pair in force keeps serving.
// Connections already open keep their session, so no connection and no
// waiting long-poll is dropped. Switching between HTTP and HTTPS needs a
// restart and refuses the reload too, rather than leave the running
// config claiming what the listener does not do.
func tlsHook(certs *tlsreload.Certs) reloadHook {
	return func(next conf.Config) (func(), error) {
		if certs == nil {
			if next.TLSCertPath != "" || next.TLSKeyPath != "" {
				return nil, tlsreload.ErrNeedsRestart
			}
			return nil, nil
		}
		return certs.Prepare(next.TLSCertPath, next.TLSKeyPath)
	}
}
