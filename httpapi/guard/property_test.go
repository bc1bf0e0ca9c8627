package guard

import (
	"errors"
	"math"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/leanovate/gopter"
	"github.com/leanovate/gopter/gen"
	"github.com/leanovate/gopter/prop"
)

// Property 4 (SPEC "Correctness properties"): a source over its limit
// gets 429 until tokens refill. The model is the token bucket of R4 in
// exact arithmetic: limits and steps are chosen so that every token count
// is a dyadic fraction, which float64 holds exactly. Each step advances
// the injected clock by a number of eighths of a second and makes a POST
// or a GET; the guard must allow exactly when the model's bucket of that
// kind holds a token, report the tokens left, and on a 429 say when the
// next token comes (rounded up, at least 1 s).
func TestPropertyRateLimit(t *testing.T) {
	p := gopter.DefaultTestParameters()
	p.MinSuccessfulTests = 300
	t.Logf("gopter seed %d", p.Seed())
	props := gopter.NewProperties(p)
	props.Property("429 exactly while the bucket is empty", prop.ForAll(
		func(postExp, getExp, windowExp int, steps []int) string {
			per := [NumKinds]int{Post: 1 << postExp, Get: 1 << getExp}
			window := time.Duration(1<<windowExp) * time.Second
			g, c := newGuard(t, func(o *Options) {
				o.PostsPerWindow, o.GetsPerWindow, o.Window = per[Post], per[Get], window
			})
			var tokens [NumKinds]float64
			var last [NumKinds]time.Time
			for k := range NumKinds {
				tokens[k], last[k] = float64(per[k]), c.t
			}
			for i, step := range steps {
				k := Kind(step % 2)
				c.Advance(time.Duration(step/2) * time.Second / 8)
				rate := float64(per[k]) / window.Seconds()
				tokens[k] = min(float64(per[k]), tokens[k]+c.t.Sub(last[k]).Seconds()*rate)
				last[k] = c.t
				w := httptest.NewRecorder()
				tk, err := g.Admit(w, request("GET", "192.0.2.1:1"), k)
				tk.Quota().Set(w.Header()) // as the handler does with an admitted request
				if tokens[k] >= 1 {
					if err != nil {
						return "step " + strconv.Itoa(i) + ": refused with a token in the bucket: " + err.Error()
					}
					tokens[k]--
				} else {
					var le *LimitError
					if !errors.As(err, &le) || le.Kind != k {
						return "step " + strconv.Itoa(i) + ": allowed with an empty bucket"
					}
					want := max(int64(math.Ceil((1-tokens[k])/rate)), 1)
					if got := max(int64((le.RetryAfter()+time.Second-1)/time.Second), 1); got != want {
						return "step " + strconv.Itoa(i) + ": Retry-After " + strconv.FormatInt(got, 10) + "; want " + strconv.FormatInt(want, 10)
					}
				}
				if got, want := w.Header().Get("RateLimit-Remaining"), strconv.Itoa(int(tokens[k])); got != want {
					return "step " + strconv.Itoa(i) + ": RateLimit-Remaining " + got + "; want " + want
				}
			}
			return ""
		},
		gen.IntRange(0, 3), gen.IntRange(0, 3), gen.IntRange(0, 4),
		gen.SliceOf(gen.IntRange(0, 2*8*20)), // up to 20 s between requests
	))
	props.TestingRun(t)
}
