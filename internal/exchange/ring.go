package exchange

// frameRing is a FIFO of frames backed by a ring buffer that grows (doubling)
// but never shrinks, so steady-state pushes and pops do not allocate.
type frameRing struct {
	buf  [][]byte
	head int
	n    int
}

func (r *frameRing) len() int { return r.n }

func (r *frameRing) push(b []byte) {
	if r.n == len(r.buf) {
		size := 2 * len(r.buf)
		if size == 0 {
			size = 8
		}
		nb := make([][]byte, size)
		for i := 0; i < r.n; i++ {
			nb[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = b
	r.n++
}

// insert puts b at position i (0 = head) of the queue, shifting the
// frames from i on back by one. Used for priority frames (rare).
func (r *frameRing) insert(i int, b []byte) {
	r.push(nil)
	for j := r.n - 1; j > i; j-- {
		r.buf[(r.head+j)%len(r.buf)] = r.buf[(r.head+j-1)%len(r.buf)]
	}
	r.buf[(r.head+i)%len(r.buf)] = b
}

// each calls fn for the queued frames from position from on, in order.
func (r *frameRing) each(from int, fn func([]byte)) {
	for j := from; j < r.n; j++ {
		fn(r.buf[(r.head+j)%len(r.buf)])
	}
}

func (r *frameRing) pop() ([]byte, bool) {
	if r.n == 0 {
		return nil, false
	}
	b := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return b, true
}

// clear drops every queued frame and returns them to fn (which may be nil).
func (r *frameRing) clear(fn func([]byte)) {
	for {
		b, ok := r.pop()
		if !ok {
			return
		}
		if fn != nil {
			fn(b)
		}
	}
}

// indexRing is a fixed-capacity FIFO of channel indexes (each index is
// queued at most once, so capacity = number of channels suffices).
type indexRing struct {
	buf  []int
	head int
	n    int
}

func newIndexRing(capacity int) indexRing { return indexRing{buf: make([]int, capacity)} }

func (r *indexRing) push(i int) {
	r.buf[(r.head+r.n)%len(r.buf)] = i
	r.n++
}

func (r *indexRing) pop() (int, bool) {
	if r.n == 0 {
		return 0, false
	}
	i := r.buf[r.head]
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return i, true
}
