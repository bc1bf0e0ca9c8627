package rules

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	hex64 := strings.Repeat("aB", 32)
	tests := []struct {
		tok, want string // want "" for a valid token
	}{
		{"plain-token_1.~", ""},
		{"sha256:" + hex64, ""},
		{"", "is empty"},
		{"to ken", "holds characters a Bearer token cannot carry (spaces, control or non-ASCII characters)"},
		{"pässwort", "holds characters a Bearer token cannot carry (spaces, control or non-ASCII characters)"},
		{"tok\x7f", "holds characters a Bearer token cannot carry (spaces, control or non-ASCII characters)"},
		{"sha256:", "starts with sha256: but is not followed by exactly 64 hex characters"},
		{"sha256:" + hex64[:62] + "zz", "starts with sha256: but is not followed by exactly 64 hex characters"},
		{"sha256:" + hex64 + "0", "starts with sha256: but is not followed by exactly 64 hex characters"},
	}
	for _, tt := range tests {
		err := Check(tt.tok)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("Check(%q) = %q; want %q", tt.tok, got, tt.want)
		}
	}
}

// TestDecodeHex: exactly twice dst's length of hex, either case, decoded
// without an allocation.
func TestDecodeHex(t *testing.T) {
	var dst [2]byte
	for _, tt := range []struct {
		s    string
		ok   bool
		want [2]byte
	}{
		{"aB0f", true, [2]byte{0xab, 0x0f}},
		{"AB0F", true, [2]byte{0xab, 0x0f}},
		{"ab0", false, [2]byte{}},
		{"ab0f0", false, [2]byte{}},
		{"ab0g", false, [2]byte{}},
		{"", false, [2]byte{}},
	} {
		dst = [2]byte{}
		if ok := DecodeHex(dst[:], tt.s); ok != tt.ok || ok && dst != tt.want {
			t.Errorf("DecodeHex(%q) = %v %x; want %v %x", tt.s, ok, dst, tt.ok, tt.want)
		}
	}
	s := strings.Repeat("aB", 64)
	var sig [64]byte
	if n := testing.AllocsPerRun(100, func() { DecodeHex(sig[:], s) }); n != 0 {
		t.Errorf("%v allocations per DecodeHex; want 0", n)
	}
}
