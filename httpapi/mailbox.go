package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/guard"
)

// bodyReadTimeout is the default of Options.BodyReadTimeout, which bounds
// reading one POST body, so that a client trickling bytes cannot hold a
// connection and a buffer for long. It is a per-request read deadline
// rather than http.Server.ReadTimeout, which would also cut the
// connection's background read during long-polls.
const bodyReadTimeout = 30 * time.Second

// postEndpoint serves POST /v1/mailbox/{id} (R1): the message is
// accepted on the connection's goroutine, so that its delivery to a
// waiting GET takes no extra hand-off, and the answer is written off it
// (offstack.go).
type postEndpoint struct{ *endpoint }

func (e *postEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rep, id, n, err := e.a.acceptPost(w, r)
	an := e.a.postAnswers.Get().(*postAnswer)
	an.offStack.e, an.w, an.r, an.start = e.endpoint, w, r, start
	an.rep, an.id, an.n, an.err = rep, id, n, err
	writeOffStack(an)
	<-an.done
	recycle(&e.a.postAnswers, an)
}

// postAnswer is a POST's outcome on its way to an answer goroutine;
// api.postAnswers keeps them, with their done channels, for reuse.
type postAnswer struct {
	offStack
	rep actor.PostReply
	id  actor.ID
	n   int // the body's length, for the log line
	err error
}

func (an *postAnswer) answer() error { return an.e.a.answerPost(an.w, an.rep, an.id, an.n, an.err) }

// receiveEndpoint serves GET /v1/mailbox/{id} (R2). The engine owns the
// receive (supervisor.StartReceive): it tells the GET's getAnswer how the
// receive ended, on whichever goroutine ended it, and the answer goes
// straight to an answer goroutine (writeOffStack), without first waking
// this one. This goroutine only waits for the answer to be written, or
// for its client to leave, and then withdraws the receive; a long-poll
// parks it right here, with nothing deep under this frame (offstack.go).
type receiveEndpoint struct{ *endpoint }

func (e *receiveEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The answer is taken first: across the wait this frame holds it
	// rather than what it carries.
	an := e.a.getAnswers.Get().(*getAnswer)
	an.offStack.e, an.w, an.r, an.start = e.endpoint, w, r, time.Now()
	id, wait, err := e.a.checkReceive(w, r, an)
	an.id = id
	var rc actor.Receipt
	if err == nil {
		// Counted from before the receive can take a message until its
		// answer is written or the message put back (Pending, Z12).
		e.a.pending.add()
		if rc, err = e.a.mb.StartReceive(r.Context(), id, wait, an); err != nil {
			e.a.pending.done()
		}
	}
	if err != nil {
		an.fail(err)
		<-an.done
		recycle(&e.a.getAnswers, an)
		return
	}
	// From here on an belongs to the engine until it is told, then to an
	// answer goroutine until done: this goroutine reads only done.
	select {
	case <-an.done:
	case <-r.Context().Done():
		if rc.Cancel() {
			an.fail(context.Cause(r.Context())) // withdrawn: the engine tells nobody
		}
		<-an.done
	}
	e.a.pending.done()
	recycle(&e.a.getAnswers, an)
}

// getAnswer carries an admitted GET to its answer: the quota for its
// headers, the source's long-poll count to release, and what the receive
// got. api.getAnswers keeps them, with their done channels, for reuse.
//
// It passes from goroutine to goroutine, one at a time: the handler's
// goroutine fills it up to StartReceive; Received (on the goroutine that
// ended the wait) or fail (on the handler's, once Cancel won) writes got
// and err and hands it on; the answer goroutine reads it all and sends
// on done; then the handler's goroutine recycles it.
type getAnswer struct {
	offStack
	quota guard.Quota // set on the answer, not before the wait
	hold  guard.Hold
	id    actor.ID
	got   actor.Delivery
	err   error
}

// Received is told how the receive ended (actor.Receiver), on the actor's
// goroutine, the deadline's or the handler's own, and hands the answer to
// an answer goroutine at once.
func (an *getAnswer) Received(d actor.Delivery, err error) {
	an.got, an.err = d, err
	writeOffStack(an)
}

// fail answers err for a receive the engine will not answer: refused, or
// withdrawn. (A Delivery built in the caller's frame would sit under every
// parked long-poll.)
func (an *getAnswer) fail(err error) {
	an.err = err
	writeOffStack(an)
}

func (an *getAnswer) answer() error { return an.e.a.answerReceive(an) }

// acceptPost queues a POST's body for the recipient (R1): the checks, the
// body and the engine, on the connection's goroutine; answerPost writes
// the 202 on an answer goroutine (postEndpoint). n is the body's length.
// Its frame is kept small: the deepest calls under it (the source
// address's parsing, a mailbox's creation) must stay within the
// connection goroutine's 4 KiB (routes.go).
//
//go:noinline
func (a *api) acceptPost(w http.ResponseWriter, r *http.Request) (rep actor.PostReply, id actor.ID, n int, err error) {
	ctx := r.Context()
	if err := context.Cause(ctx); err != nil {
		return rep, id, 0, err // shutting down, or the client has gone already
	}
	// Lists and the rate limit come first: a 400 or 401 takes a token
	// too (R4).
	t, err := a.guard.Admit(w, r, guard.Post)
	if err != nil {
		return rep, id, 0, err
	}
	t.Quota().Set(w.Header())
	if id, err = recipientID(r); err != nil {
		return rep, id, 0, err
	}
	if err := t.Authorize(w, r, id); err != nil {
		return rep, id, 0, err // before the body is read: a refused POST costs no buffer
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return rep, id, 0, err
	}
	rep, err = a.mb.Post(ctx, id, body)
	return rep, id, len(body), err
}

// answerPost answers an accepted POST 202 with the sequence and the queue
// length (R1.3), or returns err for endpoint.finish to answer.
func (a *api) answerPost(w http.ResponseWriter, rep actor.PostReply, id actor.ID, n int, err error) error {
	if err != nil {
		return err
	}
	// One allocation carries the JSON body and, as substrings of it, both
	// header values (measured against plain strconv code: docs/performance.md,
	// "Tried and rejected").
	var buf [80]byte
	b := append(buf[:0], `{"sequence":`...)
	seqAt := len(b)
	b = strconv.AppendUint(b, rep.Seq, 10)
	seqEnd := len(b)
	b = append(b, `,"queue_length":`...)
	qlAt := len(b)
	b = strconv.AppendInt(b, int64(rep.QueueLen), 10)
	qlEnd := len(b)
	b = append(b, '}')
	s := string(b)
	vals := []string{s[seqAt:seqEnd], s[qlAt:qlEnd], strconv.Itoa(len(s))}

	h := w.Header()
	h["Content-Type"] = hvJSON
	h["X-Mailbox-Epoch"] = a.epochHeader() // Z9
	h["X-Message-Sequence"] = vals[0:1:1]
	h["X-Queue-Length"] = vals[1:2:2]
	// An explicit length: the answer is flushed before the handler returns
	// (postEndpoint), and without one that would go chunked.
	h["Content-Length"] = vals[2:3:3]
	w.WriteHeader(http.StatusAccepted) // R1.3
	_, _ = io.WriteString(w, s)
	if ce := a.log.Check(zap.DebugLevel, "message accepted"); ce != nil {
		ce.Write(zap.String("id", id.Short()), zap.Int("bytes", n),
			zap.Uint64("sequence", rep.Seq), zap.Int("queue_length", rep.QueueLen))
	}
	return nil
}

// readBody reads a POST body through a hard limit: never more than
// MaxMessageSize+1 bytes, whatever Content-Length claims, and nothing at
// all when Content-Length alone is too large (R1.4). A body that ends
// before its Content-Length or its last chunk is an error, never a
// shorter message (Z10).
//
// It runs on the connection's goroutine with the checks' frames below it,
// so its own frame is small: the reading is a function of its own.
func (a *api) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := a.opts.MaxMessageSize
	n := r.ContentLength
	switch {
	case n > limit:
		return nil, errMessageTooLarge
	case n == 0:
		return nil, errEmptyMessage
	}
	rc := http.NewResponseController(w)
	// Errors mean the writer cannot set deadlines (a recorder in tests);
	// the body is then read without one.
	_ = rc.SetReadDeadline(time.Now().Add(a.opts.BodyReadTimeout))
	var src io.Reader = r.Body
	if n < 0 {
		// Chunked: MaxBytesReader fails the read past limit bytes and
		// makes net/http close the connection instead of draining the
		// rest. With a length, net/http stops the body at Content-Length,
		// which is within the limit.
		src = http.MaxBytesReader(w, r.Body, limit)
	}
	body, err := readGrowing(src, n, limit)
	// Lift the deadline once the body is in: net/http's background read
	// runs under it afterwards, and hitting it would cancel the request.
	// After a failed read it stays: net/http then discards what is left of
	// the body before it answers, and without a deadline a client that
	// never sends the rest would hold the connection for ever (slowloris).
	if err == nil {
		_ = rc.SetReadDeadline(time.Time{})
	}
	return body, err
}

// firstBodyBuffer is the most readGrowing allocates before any byte of a
// body has come: a client that declares 64 KiB and sends nothing holds
// this much, not 64 KiB, for the whole body timeout. Bodies up to this
// size (most envelopes) are read into one exact-size buffer.
const firstBodyBuffer = 2 << 10

// readGrowing reads a body of n bytes (n < 0: unknown, at most limit)
// from src into a buffer that doubles as bytes arrive, so that what a
// body holds is at most twice what its client has sent (or
// firstBodyBuffer). With a length the buffer never grows past n and
// is returned as it is; without one it never grows past limit+1 — a byte
// that proves the body too large — and what came is copied out at its
// exact size, since the queue keeps it.
//
//go:noinline
func readGrowing(src io.Reader, n, limit int64) ([]byte, error) {
	size := n
	if n < 0 {
		size = limit + 1
	}
	buf := make([]byte, 0, min(size, firstBodyBuffer))
	for {
		if len(buf) == cap(buf) {
			buf = append(make([]byte, 0, min(2*int64(cap(buf)), size)), buf...)
		}
		m, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		switch {
		case int64(len(buf)) == size && n < 0:
			return nil, errMessageTooLarge // limit+1 bytes came
		case int64(len(buf)) == size:
			return buf, nil
		case err == io.EOF && n < 0 && len(buf) == 0:
			return nil, errEmptyMessage
		case err == io.EOF && n < 0:
			// The last chunk came: the body is complete.
			return bytes.Clone(buf), nil
		case err == io.EOF:
			// net/http says io.ErrUnexpectedEOF itself when a body with
			// a length ends early.
			return nil, bodyError(io.ErrUnexpectedEOF)
		case err != nil:
			// A broken or truncated chunk, the connection's end, the
			// read deadline, MaxBytesReader's limit.
			return nil, bodyError(err)
		}
	}
}

// bodyError maps a failed body read: too large, or unreadable.
func bodyError(err error) error {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return errMessageTooLarge
	}
	return errors.Join(errBadBody, err)
}

// checkReceive checks a GET — source lists, rate limit, no body (Z10),
// credentials, wait_ms, the source's waiting long-polls (R4, R5) — and
// returns what the mailbox is to be asked for (R2). Every check happens
// here, before the mailbox is asked, so a refused GET consumes nothing.
// It keeps the quota and the long-poll count in an, for answerReceive.
// The caller asks the mailbox itself, with this function's frame gone:
// the guard's checks under it and the mailbox's creation under the
// receive are the deepest points of a GET's stack (offstack.go).
//
//go:noinline
func (a *api) checkReceive(w http.ResponseWriter, r *http.Request, an *getAnswer) (id actor.ID, wait time.Duration, err error) {
	if err := context.Cause(r.Context()); err != nil {
		return id, 0, err
	}
	t, err := a.guard.Admit(w, r, guard.Get)
	if err != nil {
		return id, 0, err
	}
	an.admitted(t)
	// Z10: a GET with a body (a length, or chunked) is refused before it
	// can wait or take a message: net/http watches for the client's
	// disconnect only once the body is read, and HTTP/2 would keep the
	// body buffered for the whole wait. It takes its rate-limit token
	// first, as every mailbox request does.
	if r.ContentLength != 0 {
		return id, 0, errUnexpectedBody
	}
	if id, err = recipientID(r); err != nil {
		return id, 0, err
	}
	if err := t.Authorize(w, r, id); err != nil {
		return id, 0, err
	}
	raw, present := queryValue(r.URL.RawQuery, "wait_ms")
	if wait, err = ParseWaitMS(raw, present, a.opts.LongPollDefault, a.opts.LongPollMax); err != nil {
		return id, 0, err
	}
	if wait > 0 {
		h, err := t.Wait()
		if err != nil {
			return id, 0, err
		}
		an.hold = h
	}
	return id, wait, nil
}

// admitted keeps an admitted GET's quota for its answer's headers. It is
// a function of its own because copying the quota out of the ticket
// takes temporaries that would otherwise sit in checkReceive's frame,
// under which the guard's checks run: the deepest point of a GET before
// its wait, where 128 bytes more grew every parked connection's stack to
// 8 KiB (TestProcessParkedStackFootprint, offstack.go).
//
//go:noinline
func (an *getAnswer) admitted(t guard.Ticket) { an.quota = t.Quota() }

// answerReceive writes what a GET got: 200 with the message, 204 when
// none came, or the error for endpoint.finish to answer. It ends the
// long-poll's count against its source.
//
//go:noinline
func (a *api) answerReceive(an *getAnswer) error {
	w, r, id, d, err := an.w, an.r, an.id, an.got, an.err
	an.quota.Set(w.Header())
	an.hold.Release()
	if err != nil {
		return err // shutdown answers 503 at once; a client that left, 400
	}
	ctx := r.Context()
	h := w.Header()
	// Consume-on-read: no cache may keep or replay this answer (R2.6).
	h["Cache-Control"] = hvNoStore
	h["X-Mailbox-Epoch"] = a.epochHeader() // Z9: on the 200 and the 204
	if !d.OK {
		h["X-Queue-Length"] = hvZero
		w.WriteHeader(http.StatusNoContent) // R2.5
		if ce := a.log.Check(zap.DebugLevel, "no message"); ce != nil {
			ce.Write(zap.String("id", id.Short()))
		}
		return nil
	}

	msg := d.Message
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), ErrShuttingDown) {
		// Z2: the client left after the hand-off. Nobody will read the
		// message, so it goes back to the head of its queue, and the
		// request is answered as cancelled (Z10). (A shutdown, by
		// contrast, leaves the client connected: it gets the message it
		// was handed.)
		a.requeue(id, msg, "client left after hand-off")
		return context.Cause(ctx)
	}

	var buf [48]byte
	b := strconv.AppendUint(buf[:0], msg.Seq, 10)
	seqEnd := len(b)
	b = strconv.AppendInt(b, int64(d.QueueLen), 10)
	qlEnd := len(b)
	b = strconv.AppendInt(b, int64(len(msg.Body)), 10)
	s := string(b)
	vals := []string{s[:seqEnd], s[seqEnd:qlEnd], s[qlEnd:]}
	h["Content-Type"] = hvOctetStream
	h["X-Message-Sequence"] = vals[0:1:1]
	h["X-Queue-Length"] = vals[1:2:2]
	// An explicit length keeps a flushed response from going chunked.
	h["Content-Length"] = vals[2:3:3]
	w.WriteHeader(http.StatusOK) // R2.3

	// The response must reach the connection before the message counts as
	// delivered: flush, and on failure put it back (Z2, at-least-once;
	// clients de-duplicate by sequence).
	_, err = w.Write(msg.Body)
	if err == nil {
		err = http.NewResponseController(w).Flush()
	}
	if err != nil {
		a.requeue(id, msg, "response write failed")
		return nil
	}
	if err := a.mb.Acknowledge(id, msg); err != nil {
		// The lease runs out and the message is delivered again: clients
		// de-duplicate by sequence (Z13).
		a.log.Warn("acknowledge failed: the message will be delivered again", zap.String("id", id.Short()),
			zap.Uint64("sequence", msg.Seq), zap.Error(err))
	}
	if ce := a.log.Check(zap.DebugLevel, "message delivered"); ce != nil {
		ce.Write(zap.String("id", id.Short()), zap.Uint64("sequence", msg.Seq),
			zap.Int("queue_length", d.QueueLen))
	}
	return nil
}

// requeue puts a message that could not be delivered back at the head of
// its queue (Z2).
func (a *api) requeue(id actor.ID, msg actor.Message, why string) {
	if err := a.mb.Requeue(id, msg); err != nil {
		// Only a supervisor whose leftovers were already taken for the
		// state file refuses, and then the message is lost: worth a
		// warning, without the id (Z6).
		a.log.Warn("requeue failed: message lost", zap.String("reason", why), zap.Error(err))
		return
	}
	if ce := a.log.Check(zap.DebugLevel, "message requeued"); ce != nil {
		ce.Write(zap.String("id", id.Short()), zap.Uint64("sequence", msg.Seq), zap.String("reason", why))
	}
}

// ParseWaitMS turns the wait_ms query value into a long-poll duration
// (R2.2). Absent (present false): def. Any non-empty string of ASCII
// digits is valid, with values above limit, however many digits, clamped
// to limit; 0 answers at once. Anything else — empty, signs, decimals,
// letters, spaces — is ErrBadWaitMS. Results never exceed limit nor go
// below 0.
func ParseWaitMS(raw string, present bool, def, limit time.Duration) (time.Duration, error) {
	limit = max(limit, 0)
	if !present {
		return min(max(def, 0), limit), nil
	}
	if raw == "" {
		return 0, ErrBadWaitMS
	}
	limitMS := int64(limit / time.Millisecond)
	var ms int64
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c < '0' || c > '9' {
			return 0, ErrBadWaitMS
		}
		// Stop accumulating once past the limit, so that no number of
		// digits can overflow; keep checking that the rest are digits.
		if ms <= limitMS {
			ms = ms*10 + int64(c-'0')
		}
	}
	if ms > limitMS {
		return limit, nil
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// queryValue returns the first value of key in a raw query string, decoded
// the way url.ParseQuery decodes it, without building url.Values. present
// is false when key does not occur.
func queryValue(query, key string) (value string, present bool) {
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		// url.ParseQuery skips pairs with a semicolon and pairs that do not
		// unescape; so does this.
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, ok := unescapeQuery(k)
		if !ok || k != key {
			continue
		}
		if v, ok = unescapeQuery(v); ok {
			return v, true
		}
	}
	return "", false
}

// unescapeQuery is url.QueryUnescape, skipped when there is nothing to
// unescape (the common case) so that it costs nothing.
func unescapeQuery(s string) (string, bool) {
	if !strings.ContainsAny(s, "%+") {
		return s, true
	}
	u, err := url.QueryUnescape(s)
	return u, err == nil
}
