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
