package guard

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	gotoml "github.com/pelletier/go-toml/v2"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/conf/rules"
)

// Mode is the authentication mode (auth_mode, R5).
type Mode uint8

const (
	// Disabled: anonymous access (the default, R5.7).
	Disabled Mode = iota
	// ServerWide: every mailbox request needs a server token (R5.5).
	ServerWide
	// PerMailbox: a GET needs a token of its mailbox or a server token;
	// POST stays open (R5.4).
	PerMailbox
	// Signature: a GET proves possession of the mailbox's key (Z4); POST
	// stays open.
	Signature
)

var modeNames = [...]string{"disabled", "server_wide", "per_mailbox", "signature"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", m)
}

// ParseMode reads an auth_mode value.
func ParseMode(s string) (Mode, error) {
	if i := slices.Index(modeNames[:], s); i >= 0 {
		return Mode(i), nil
	}
	return 0, fmt.Errorf("unknown auth mode %q", s)
}

// digest is the SHA-256 of a token. Tokens are kept and compared only as
// digests: a configured "sha256:<hex>" is one already, a plain token is
// hashed once at load, and a presented token is hashed per request, so
// every comparison has the same length and runs in constant time.
type digest [sha256.Size]byte

// parseToken reads one configured token: plain, or "sha256:<64 hex>",
// by the rule conf validates auth_tokens with (rules.Check). Its
// errors never hold the token.
func parseToken(tok string) (digest, error) {
	if err := rules.Check(tok); err != nil {
		return digest{}, err
	}
	if hexDigest, ok := strings.CutPrefix(tok, rules.Prefix); ok {
		return rules.Digest(hexDigest)
	}
	return sha256.Sum256([]byte(tok)), nil
}

// parseTokens reads a token list; errors name entries by position.
func parseTokens(what string, toks []string) ([]digest, error) {
	ds := make([]digest, 0, len(toks))
	for i, tok := range toks {
		d, err := parseToken(tok)
		if err != nil {
			return nil, fmt.Errorf("%s entry %d %w", what, i+1, err)
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// credential is what a request's Authorization header holds.
type credential uint8

const (
	credMissing credential = iota // no header, or not the Bearer scheme: 401
	credBearer                    // a Bearer token to compare
	credBad                       // a Bearer credential that cannot be a token: 403
)

// bearerToken reads the Authorization header lines (R5.1): one line
// "Bearer <token>", the scheme in any case, separated by one or more
// spaces. No line, or another scheme, is a missing credential; several
// lines or a token with spaces or non-ASCII characters is a bad one. It
// allocates nothing.
func bearerToken(lines []string) (string, credential) {
	switch len(lines) {
	case 0:
		return "", credMissing
	case 1:
	default:
		return "", credBad
	}
	v := strings.Trim(lines[0], " \t")
	const scheme = "bearer"
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", credMissing
	}
	rest := v[len(scheme):]
	if rest != "" && rest[0] != ' ' {
		return "", credMissing // "Bearerx …" is another scheme
	}
	tok := strings.TrimLeft(rest, " ")
	if tok == "" {
		return "", credMissing
	}
	if !rules.Visible(tok) {
		return "", credBad
	}
	return tok, credBearer
}

// sha256Sum hashes a presented token; through a stack buffer, so that an
// ordinary token costs no allocation.
func sha256Sum(s string) digest {
	var buf [128]byte
	if len(s) <= len(buf) {
		n := copy(buf[:], s)
		return sha256.Sum256(buf[:n])
	}
	return sha256.Sum256([]byte(s))
}

// matchAny reports, in time independent of which entry matches or where
// they differ, whether d is one of set or of more.
func matchAny(d *digest, set, more []digest) bool {
	found := 0
	for i := range set {
		found |= subtle.ConstantTimeCompare(d[:], set[i][:])
	}
	for i := range more {
		found |= subtle.ConstantTimeCompare(d[:], more[i][:])
	}
	return found == 1
}

// MailboxTokens are the per-mailbox tokens of mailbox_tokens_file (R5.4),
// as digests. LoadMailboxTokens reads them; cmd passes them in Options.
type MailboxTokens struct {
	byID map[actor.ID][]digest
}

// Len is the number of mailboxes with tokens.
func (t *MailboxTokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.byID)
}

// mailboxFile is mailbox_tokens_file's one table.
type mailboxFile struct {
	Mailboxes map[string][]string `toml:"mailboxes"`
}

// LoadMailboxTokens reads a mailbox token file: TOML with one table,
// [mailboxes], whose keys are recipient ids (64 hex characters, either
// case) and whose values are lists of tokens, plain or "sha256:<hex>"
// (docs/auth.md). Every problem is reported at once; messages name
// entries by their position among the keys in sorted order, never by id
// or token (Z6).
func LoadMailboxTokens(path string) (*MailboxTokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseMailboxTokens(b)
}

// ParseMailboxTokens is LoadMailboxTokens on the file's contents.
func ParseMailboxTokens(b []byte) (*MailboxTokens, error) {
	var f mailboxFile
	dec := gotoml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		var de *gotoml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return nil, fmt.Errorf("line %d column %d: %s", row, col, de.Error())
		}
		var se *gotoml.StrictMissingError
		if errors.As(err, &se) {
			return nil, errors.New("unknown keys outside [mailboxes]: the file holds only the [mailboxes] table")
		}
		return nil, err
	}
	keys := make([]string, 0, len(f.Mailboxes))
	for k := range f.Mailboxes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	t := &MailboxTokens{byID: make(map[actor.ID][]digest, len(keys))}
	var problems []error
	for i, k := range keys {
		where := fmt.Sprintf("[mailboxes] key %d of %d (sorted)", i+1, len(keys))
		id, err := actor.ParseID(k)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s is not a recipient id of 64 hex characters", where))
			continue
		}
		if _, dup := t.byID[id]; dup {
			problems = append(problems, fmt.Errorf("%s names a mailbox already listed (ids are case-insensitive)", where))
			continue
		}
		ds, err := parseTokens(where+" token", f.Mailboxes[k])
		if err != nil {
			problems = append(problems, err)
			continue
		}
		if len(ds) == 0 {
			problems = append(problems, fmt.Errorf("%s has no tokens", where))
			continue
		}
		t.byID[id] = ds
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return t, nil
}
