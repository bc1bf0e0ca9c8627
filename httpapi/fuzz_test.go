package httpapi

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/big"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

var digitsRE = regexp.MustCompile(`^[0-9]+$`)

// FuzzParseWaitMS compares ParseWaitMS with a slow reference built on
// math/big (R2.2): digits only, clamped to the limit however large.
func FuzzParseWaitMS(f *testing.F) {
	const (
		def   = int64(30 * time.Second)
		limit = int64(60 * time.Second)
	)
	for _, raw := range []string{
		"", "0", "00", "1", "59999", "60000", "60001", "9223372036854775807", "9223372036854775808",
		"99999999999999999999999999999999999999", "-1", "+1", "1.5", "1e3", " 1", "1 ", "0x1", "abc", "١", "\x00",
	} {
		f.Add(raw, true, def, limit)
	}
	f.Add("", false, def, limit)
	f.Add("5", true, int64(0), int64(0))
	f.Add("5", false, int64(-5), int64(-1))
	f.Add("123", true, def, int64(1500*time.Microsecond))
	f.Fuzz(func(t *testing.T, raw string, present bool, def, limit int64) {
		got, err := ParseWaitMS(raw, present, time.Duration(def), time.Duration(limit))
		want, wantErr := refParseWaitMS(raw, present, time.Duration(def), time.Duration(limit))
		if !errors.Is(err, wantErr) || (err == nil) != (wantErr == nil) || got != want {
			t.Fatalf("ParseWaitMS(%q, %v, %v, %v) = %v, %v; want %v, %v", raw, present, def, limit, got, err, want, wantErr)
		}
		if err == nil && (got < 0 || got > max(time.Duration(limit), 0)) {
			t.Fatalf("ParseWaitMS(%q) = %v outside [0, %v]", raw, got, limit)
		}
	})
}

func refParseWaitMS(raw string, present bool, def, limit time.Duration) (time.Duration, error) {
	limit = max(limit, 0)
	if !present {
		return min(max(def, 0), limit), nil
	}
	if !digitsRE.MatchString(raw) {
		return 0, ErrBadWaitMS
	}
	v, _ := new(big.Int).SetString(raw, 10)
	if v.Cmp(big.NewInt(int64(limit/time.Millisecond))) > 0 {
		return limit, nil
	}
	return time.Duration(v.Int64()) * time.Millisecond, nil
}

// FuzzParseID compares actor.ParseID with encoding/hex: exactly 64 hex
// characters of either case, and AB… names the same mailbox as ab….
func FuzzParseID(f *testing.F) {
	valid := rid("seed")
	for _, s := range []string{
		valid, strings.ToUpper(valid), valid[:63], valid + "0", "", strings.Repeat("g", 64),
		valid[:62] + "zz", valid[:63] + "\x00", strings.Repeat("0", 64), strings.Repeat("F", 64),
		valid[:31] + "/" + valid[32:], strings.Repeat("é", 32),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := actor.ParseID(s)
		raw, hexErr := hex.DecodeString(s)
		if len(s) != 64 || hexErr != nil {
			if !errors.Is(err, actor.ErrBadID) || id != (actor.ID{}) {
				t.Fatalf("ParseID(%q) = %x, %v; want ErrBadID", s, id, err)
			}
			return
		}
		if err != nil || !bytes.Equal(id[:], raw) {
			t.Fatalf("ParseID(%q) = %x, %v; want %x", s, id, err, raw)
		}
		if id.String() != strings.ToLower(s) || id.Short() != strings.ToLower(s[:8]) {
			t.Fatalf("ParseID(%q): String %q Short %q", s, id.String(), id.Short())
		}
		up, err := actor.ParseID(strings.ToUpper(s))
		if err != nil || up != id {
			t.Fatalf("ParseID(upper %q) = %x, %v; want %x", s, up, err, id)
		}
	})
}

// FuzzQueryValue compares queryValue with url.ParseQuery, which r.URL.Query
// uses: same first value, same presence.
func FuzzQueryValue(f *testing.F) {
	for _, q := range []string{
		"", "wait_ms=1", "wait_ms", "wait_ms=", "a=b&wait_ms=2&wait_ms=3", "wait%5Fms=4", "wait_ms=%31%30",
		"wait_ms=%zz&wait_ms=5", "wait_ms=6;x=1", "x=1;wait_ms=7&wait_ms=8", "&&wait_ms=9&", "wait_ms=1+2", "wait+ms=1",
		"wait_ms==", "=wait_ms",
	} {
		f.Add(q, "wait_ms")
	}
	f.Fuzz(func(t *testing.T, query, key string) {
		got, present := queryValue(query, key)
		vals, _ := url.ParseQuery(query)
		want, wantPresent := "", vals.Has(key)
		if wantPresent {
			want = vals.Get(key)
		}
		if got != want || present != wantPresent {
			t.Fatalf("queryValue(%q, %q) = %q, %v; want %q, %v", query, key, got, present, want, wantPresent)
		}
	})
}
