package client

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite docs/signature-test-vectors.json")

const vectorsPath = "../../docs/signature-test-vectors.json"

// vectorFile is docs/signature-test-vectors.json: inputs (seed, timestamp,
// nonce) and what every client must derive from them.
type vectorFile struct {
	Description string   `json:"description"`
	Vectors     []vector `json:"vectors"`
}

type vector struct {
	Name string `json:"name"`
	// Seed is the 32-byte Ed25519 private key seed (RFC 8032), hex.
	Seed         string `json:"seed"`
	PublicKey    string `json:"public_key"`
	RecipientID  string `json:"recipient_id"`
	Timestamp    string `json:"timestamp"`
	Nonce        string `json:"nonce"`
	SignedString string `json:"signed_string"`
	Signature    string `json:"signature"`
}

// makeVectors derives the vectors from fixed seeds, timestamps and nonces.
func makeVectors(t *testing.T) vectorFile {
	t.Helper()
	inputs := []struct {
		name  string
		ts    int64
		nonce string
	}{
		{"16-byte nonce", 1700000000, "000102030405060708090a0b0c0d0e0f"},
		{"8-byte nonce, the shortest", 1750000000, "f0e1d2c3b4a59687"},
		{"32-byte nonce, the longest", 1800000000, "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"},
	}
	f := vectorFile{Description: "Z4 signed GET test vectors for zrc-rendezvous (auth_mode = \"signature\"). " +
		"For each vector: the Ed25519 key from seed has public_key; recipient_id = hex(SHA-256(public_key)); " +
		"signed_string is \"zrc-rendezvous-v1\\nGET\\n/v1/mailbox/<recipient_id>\\n<timestamp>\\n<nonce>\"; " +
		"signature = hex(Ed25519-sign(key, signed_string)). Send public_key, timestamp, nonce and signature as " +
		"X-Mailbox-Key, X-Mailbox-Timestamp, X-Mailbox-Nonce and X-Mailbox-Signature. See docs/auth.md."}
	for i, in := range inputs {
		seed := sha256.Sum256([]byte("zrc-rendezvous test vector " + strconv.Itoa(i+1)))
		key := ed25519.NewKeyFromSeed(seed[:])
		nonce, err := hex.DecodeString(in.nonce)
		if err != nil {
			t.Fatal(err)
		}
		s, err := SignGet(key, time.Unix(in.ts, 0), nonce)
		if err != nil {
			t.Fatal(err)
		}
		pub := key.Public().(ed25519.PublicKey)
		f.Vectors = append(f.Vectors, vector{
			Name: in.name, Seed: hex.EncodeToString(seed[:]), PublicKey: s.Key, RecipientID: MailboxID(pub),
			Timestamp: s.Timestamp, Nonce: s.Nonce,
			SignedString: string(SignedString(MailboxID(pub), s.Timestamp, s.Nonce)), Signature: s.Signature,
		})
	}
	return f
}

// The vectors in docs/ are what this package computes, and they verify.
func TestSignatureTestVectors(t *testing.T) {
	want := makeVectors(t)
	if *update {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // keep "<recipient_id>" readable
		enc.SetIndent("", "  ")
		if err := enc.Encode(want); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsPath, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var got vectorFile
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Vectors) != len(want.Vectors) {
		t.Fatalf("%d vectors in the file; want %d", len(got.Vectors), len(want.Vectors))
	}
	for i, v := range got.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			if v != want.Vectors[i] {
				t.Fatalf("file has\n%+v\nthis package computes\n%+v", v, want.Vectors[i])
			}
			pub, _ := hex.DecodeString(v.PublicKey)
			sig, _ := hex.DecodeString(v.Signature)
			if !ed25519.Verify(pub, []byte(v.SignedString), sig) {
				t.Error("signature does not verify")
			}
			sum := sha256.Sum256(pub)
			if hex.EncodeToString(sum[:]) != v.RecipientID {
				t.Error("recipient_id is not SHA-256 of public_key")
			}
		})
	}
}

func TestSignGetHeaders(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	key := ed25519.NewKeyFromSeed(seed)
	nonce, err := NewNonce()
	if err != nil || len(nonce) != NonceSize {
		t.Fatalf("NewNonce = %x, %v", nonce, err)
	}
	s, err := SignGet(key, time.Unix(1700000000, 0), nonce)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	s.Apply(h)
	for k, want := range map[string]string{
		"X-Mailbox-Key": s.Key, "X-Mailbox-Timestamp": "1700000000", "X-Mailbox-Nonce": hex.EncodeToString(nonce), "X-Mailbox-Signature": s.Signature,
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q; want %q", k, got, want)
		}
	}
	if _, err := SignGet(key, time.Now(), make([]byte, 7)); err == nil {
		t.Error("a 7-byte nonce was accepted")
	}
	if _, err := SignGet(key[:10], time.Now(), nonce); err == nil {
		t.Error("a short key was accepted")
	}
}
