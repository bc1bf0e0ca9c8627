package actor

// queue is a FIFO of messages in a ring buffer that can also take a message
// back at its head (Z2). It grows by doubling and never beyond what the
// mailbox's cap lets in; it is owned by the mailbox's run goroutine.
type queue struct {
	buf  []Message
	head int
	n    int
}

func (q *queue) len() int { return q.n }

func (q *queue) grow() {
	// Most mailboxes hold one message at a time: start at one slot.
	size := max(1, 2*len(q.buf))
	buf := make([]Message, size)
	for i := 0; i < q.n; i++ {
		buf[i] = q.buf[(q.head+i)%len(q.buf)]
	}
	q.buf, q.head = buf, 0
}

func (q *queue) pushBack(m Message) {
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)%len(q.buf)] = m
	q.n++
}

func (q *queue) pushFront(m Message) {
	if q.n == len(q.buf) {
		q.grow()
	}
	q.head = (q.head - 1 + len(q.buf)) % len(q.buf)
	q.buf[q.head] = m
	q.n++
}

// front returns the oldest message; the queue must not be empty.
func (q *queue) front() *Message { return &q.buf[q.head] }

// popFront removes and returns the oldest message; the queue must not be empty.
func (q *queue) popFront() Message {
	m := q.buf[q.head]
	q.buf[q.head] = Message{} // let the body be collected
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	if q.n == 0 && len(q.buf) > 16 {
		// A burst is over: give its backing array back.
		q.buf, q.head = nil, 0
	}
	return m
}
