package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

// router takes a shortcut past ServeMux for plain mailbox paths; every
// request must get the answer ServeMux alone would give it. Each case
// goes once through the router and once through its ServeMux, each time
// for a fresh recipient, and the two answers must agree in status, error
// code and message, and the headers that steer a client (Allow, Location).
func TestRouterAgreesWithServeMux(t *testing.T) {
	s := newTestServer(t)
	rt := New(Deps{Mailboxes: s.sup, Metrics: metrics.NewSet(), Options: defaultConfig().api}).(*router)
	paths := map[string]func(id string) string{
		"plain":              func(id string) string { return mailboxPath(id) },
		"upper case":         func(id string) string { return mailboxPath(strings.ToUpper(id)) },
		"one escaped digit":  func(id string) string { return mailboxPath("%" + fmt.Sprintf("%02X", id[0]) + id[1:]) },
		"escaped slash":      func(id string) string { return mailboxPath(id[:31] + "%2F" + id[32:]) },
		"slash inside":       func(id string) string { return mailboxPath(id[:31] + "/" + id[32:]) },
		"63 characters":      func(id string) string { return mailboxPath(id[:63]) },
		"65 characters":      func(id string) string { return mailboxPath(id + "a") },
		"not hex":            func(id string) string { return mailboxPath(strings.Repeat("g", 64)) },
		"dots":               func(id string) string { return mailboxPath(strings.Repeat(".", 64)) },
		"trailing slash":     func(id string) string { return mailboxPath(id) + "/" },
		"double slash":       func(id string) string { return "/v1/mailbox//" + id },
		"dot segment":        func(id string) string { return "/v1/mailbox/./" + id },
		"parent segment":     func(id string) string { return "/v1/x/../mailbox/" + id },
		"other prefix":       func(id string) string { return "/v1/mailboxes/" + id },
		"query":              func(id string) string { return mailboxPath(id) + "?wait_ms=0&x=1" },
		"bad wait":           func(id string) string { return mailboxPath(id) + "?wait_ms=soon" },
		"escaped query only": func(id string) string { return mailboxPath(id) + "?wait_ms=%30" },
	}
	methods := []string{"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"}
	serve := func(h http.Handler, method, target string) *httptest.ResponseRecorder {
		var body *strings.Reader
		if method == "POST" {
			body = strings.NewReader("envelope")
		} else {
			body = strings.NewReader("")
		}
		if method == "GET" && !strings.Contains(target, "?") {
			target += "?wait_ms=0"
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, target, body))
		return w
	}
	// code is an error answer's code and message; "" for any other.
	code := func(w *httptest.ResponseRecorder) string {
		var e map[string]string
		if json.Unmarshal(w.Body.Bytes(), &e) != nil {
			return ""
		}
		return e["error"] + ": " + e["message"]
	}
	for name, path := range paths {
		for _, m := range methods {
			viaRouter := serve(rt, m, path(rid(name+m+"router")))
			viaMux := serve(rt.mux, m, path(rid(name+m+"mux")))
			if viaRouter.Code != viaMux.Code || code(viaRouter) != code(viaMux) ||
				viaRouter.Header().Get("Allow") != viaMux.Header().Get("Allow") ||
				(viaRouter.Header().Get("Location") == "") != (viaMux.Header().Get("Location") == "") {
				t.Errorf("%s %s: router %d %q %v, ServeMux %d %q %v", m, name,
					viaRouter.Code, code(viaRouter), viaRouter.Header(), viaMux.Code, code(viaMux), viaMux.Header())
			}
		}
	}
}
