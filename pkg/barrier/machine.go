package barrier

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"time"
)

// MaxPendingAtLeastOnce bounds the checkpoints pending at once in
// ModeAtLeastOnce; a new one beyond it aborts the oldest
// (ReasonTooManyPending).
const MaxPendingAtLeastOnce = 50

// Config describes one task's inputs and checkpointing mode.
type Config struct {
	// Channels is the number of input channels, numbered 0..Channels-1.
	// Zero means a source task, which checkpoints on EventTrigger.
	Channels int
	// Mode is the checkpointing mode. Zero means ModeAligned.
	Mode Mode
	// AlignedTimeout, with ModeAligned, switches an alignment that has lasted
	// this long (measured from the first barrier's Time, with EventTick and
	// barrier times) to unaligned. Zero (the default) never switches. Must be
	// zero for the other modes.
	AlignedTimeout time.Duration
}

// EnsureDefaults fills zero fields with their defaults.
func (c *Config) EnsureDefaults() {
	if c.Mode == 0 {
		c.Mode = ModeAligned
	}
}

// Validate reports whether the Config describes a valid machine.
func (c Config) Validate() error {
	if c.Channels < 0 {
		return fmt.Errorf("channels = %d: want 0 (source) or more: %w", c.Channels, ErrInvalidConfig)
	}
	switch c.Mode {
	case ModeAligned, ModeUnaligned, ModeAtLeastOnce:
	default:
		return fmt.Errorf("%s: want aligned, unaligned or at-least-once: %w", c.Mode, ErrInvalidConfig)
	}
	if c.AlignedTimeout < 0 {
		return fmt.Errorf("aligned timeout %s: want >= 0: %w", c.AlignedTimeout, ErrInvalidConfig)
	}
	if c.AlignedTimeout > 0 && c.Mode != ModeAligned {
		return fmt.Errorf("aligned timeout %s with mode %s: the timeout only applies to mode aligned; set it to 0: %w",
			c.AlignedTimeout, c.Mode, ErrInvalidConfig)
	}
	return nil
}

type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) has(i int) bool { return b[i/64]&(1<<(uint(i)%64)) != 0 }
func (b bitset) set(i int)      { b[i/64] |= 1 << (uint(i) % 64) }
func (b bitset) count() (n int) {
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// checkpoint is the alignment state of one checkpoint.
type checkpoint struct {
	id   uint64
	opts Options
	// kind is how the checkpoint is handled now: KindAligned (blocking),
	// KindUnaligned (snapshot taken, capturing) or KindAtLeastOnce.
	kind     Kind
	seen     bitset // channels whose barrier arrived
	waiting  int    // open channels whose barrier has not arrived
	first    time.Time
	deadline time.Time // aligned timeout; zero if none
}

type channel struct {
	ended   bool
	blocked bool
	capture uint64 // checkpoint whose in-flight data this channel feeds; 0 if none
}

// Machine is the barrier-handling state machine of one task. It is not safe
// for concurrent use: the task's goroutine owns it.
type Machine struct {
	cfg      Config
	chans    []channel
	open     int // channels not ended
	nblocked int
	now      time.Time
	latest   uint64        // highest checkpoint id seen in any event
	pending  []*checkpoint // ascending ids; at most one unless ModeAtLeastOnce
	last     *checkpoint   // most recently finished checkpoint (highest id), for duplicate detection
	out      []Action
}

// New returns a Machine for cfg (after cfg.EnsureDefaults) with every
// channel open and nothing pending.
func New(cfg Config) (*Machine, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Machine{
		cfg:   cfg,
		chans: make([]channel, cfg.Channels),
		open:  cfg.Channels,
		out:   make([]Action, 0, 8),
	}, nil
}

// Config returns the machine's configuration, with defaults filled.
func (m *Machine) Config() Config { return m.cfg }

// Blocked reports whether the driver must not read channel ch.
func (m *Machine) Blocked(ch int) bool { return ch >= 0 && ch < len(m.chans) && m.chans[ch].blocked }

// Capturing returns the checkpoint whose in-flight data records of channel ch
// currently belong to, if any.
func (m *Machine) Capturing(ch int) (id uint64, ok bool) {
	if ch < 0 || ch >= len(m.chans) || m.chans[ch].capture == 0 {
		return 0, false
	}
	return m.chans[ch].capture, true
}

// Pending returns the ids of checkpoints whose barriers are still being
// collected, ascending.
func (m *Machine) Pending() []uint64 {
	ids := make([]uint64, len(m.pending))
	for i, p := range m.pending {
		ids[i] = p.id
	}
	return ids
}

// Step applies ev and returns the actions the driver must execute, in order.
// The returned slice is owned by the Machine and valid until the next Step;
// Step does not allocate for EventRecord. On error the state is unchanged and
// no action is returned.
func (m *Machine) Step(ev Event) ([]Action, error) {
	m.out = m.out[:0]
	var err error
	switch ev.Type {
	case EventBarrier:
		err = m.barrier(ev)
	case EventRecord:
		err = m.record(ev.Channel)
	case EventEnd:
		err = m.end(ev)
	case EventCancel:
		err = m.cancel(ev)
	case EventAbort:
		err = m.abortID(ev.ID, ReasonAborted)
	case EventTick:
		m.observe(ev.Time)
		m.checkTimeout()
	case EventTrigger:
		err = m.trigger(ev)
	default:
		err = fmt.Errorf("event type %d: %w", ev.Type, ErrUnknownEvent)
	}
	if err != nil {
		m.out = m.out[:0]
		return nil, err
	}
	return m.out, nil
}

func (m *Machine) emit(a Action) { m.out = append(m.out, a) }

func (m *Machine) observe(t time.Time) {
	if !t.IsZero() && t.After(m.now) {
		m.now = t
	}
}

// checkChannel validates that an event may arrive on ch.
func (m *Machine) checkChannel(ev Event) error {
	if len(m.chans) == 0 {
		return fmt.Errorf("%s on channel %d: the task has no inputs: %w", ev.Type, ev.Channel, ErrSourceTask)
	}
	if ev.Channel < 0 || ev.Channel >= len(m.chans) {
		return fmt.Errorf("%s on channel %d: the task has channels 0..%d: %w",
			ev.Type, ev.Channel, len(m.chans)-1, ErrUnknownChannel)
	}
	c := &m.chans[ev.Channel]
	if c.ended {
		return fmt.Errorf("%s on channel %d after its end: %w", ev.Type, ev.Channel, ErrChannelEnded)
	}
	if c.blocked {
		if ev.Type == EventBarrier {
			if p := m.find(ev.ID); p != nil && p.seen.has(ev.Channel) {
				return fmt.Errorf("barrier %d on channel %d: %w", ev.ID, ev.Channel, ErrDuplicateBarrier)
			}
		}
		return fmt.Errorf("%s on channel %d while blocked; do not read blocked channels: %w",
			ev.Type, ev.Channel, ErrChannelBlocked)
	}
	return nil
}

func (m *Machine) find(id uint64) *checkpoint {
	for _, p := range m.pending {
		if p.id == id {
			return p
		}
	}
	return nil
}

func (m *Machine) record(ch int) error {
	if ch < 0 || ch >= len(m.chans) || m.chans[ch].ended || m.chans[ch].blocked {
		return m.checkChannel(Event{Type: EventRecord, Channel: ch})
	}
	if id := m.chans[ch].capture; id != 0 {
		m.emit(Action{Type: ActionCapture, ID: id, Channel: ch})
	}
	return nil
}

func (m *Machine) barrier(ev Event) error {
	if err := m.checkChannel(ev); err != nil {
		return err
	}
	if ev.ID == 0 {
		return fmt.Errorf("barrier on channel %d: %w", ev.Channel, ErrInvalidID)
	}
	ch := ev.Channel
	if p := m.find(ev.ID); p != nil {
		if p.seen.has(ch) {
			return fmt.Errorf("barrier %d on channel %d: %w", ev.ID, ch, ErrDuplicateBarrier)
		}
		m.observe(ev.Time)
		p.seen.set(ch)
		p.waiting--
		switch p.kind {
		case KindAligned:
			switch {
			case p.waiting == 0:
				m.complete(p)
			case !p.deadline.IsZero() && !m.now.Before(p.deadline):
				m.switchToUnaligned(p)
			default:
				m.block(ch)
			}
		case KindUnaligned:
			m.stopCapture(p, ch)
			if p.waiting == 0 {
				m.complete(p)
			}
		case KindAtLeastOnce:
			if p.waiting == 0 {
				m.complete(p)
			}
		}
		return nil
	}
	if m.last != nil && m.last.id == ev.ID {
		// A straggler of a finished (completed or aborted) checkpoint.
		if m.last.seen.has(ch) {
			return fmt.Errorf("barrier %d on channel %d: %w", ev.ID, ch, ErrDuplicateBarrier)
		}
		m.observe(ev.Time)
		m.last.seen.set(ch)
		return nil
	}
	m.observe(ev.Time)
	if ev.ID <= m.latest {
		return nil // older than a checkpoint already seen: subsumed, ignore
	}
	m.latest = ev.ID
	if m.cfg.Mode == ModeAtLeastOnce {
		if len(m.pending) == MaxPendingAtLeastOnce {
			m.abortPending(m.pending[0], ReasonTooManyPending)
		}
	} else {
		for len(m.pending) > 0 {
			m.abortPending(m.pending[0], ReasonSubsumed)
		}
	}
	p := &checkpoint{
		id:      ev.ID,
		opts:    ev.Options,
		seen:    newBitset(len(m.chans)),
		waiting: m.open - 1,
		first:   m.now,
	}
	p.seen.set(ch)
	m.pending = append(m.pending, p)
	switch {
	case m.cfg.Mode == ModeAtLeastOnce:
		p.kind = KindAtLeastOnce
		if p.waiting == 0 {
			m.complete(p)
		}
	case m.cfg.Mode == ModeUnaligned && !ev.Options.Savepoint:
		m.switchToUnaligned(p)
	default:
		p.kind = KindAligned
		if m.cfg.AlignedTimeout > 0 && !ev.Options.Savepoint {
			p.deadline = p.first.Add(m.cfg.AlignedTimeout)
		}
		if p.waiting == 0 {
			m.complete(p)
		} else {
			m.block(ch)
		}
	}
	return nil
}

func (m *Machine) block(ch int) {
	m.chans[ch].blocked = true
	m.nblocked++
	m.emit(Action{Type: ActionBlock, Channel: ch})
}

func (m *Machine) unblockAll() {
	if m.nblocked == 0 {
		return
	}
	for i := range m.chans {
		m.chans[i].blocked = false
	}
	m.nblocked = 0
	m.emit(Action{Type: ActionUnblockAll})
}

// switchToUnaligned takes p's snapshot now, forwards its barrier overtaking
// output, and captures the open channels whose barrier is still to come.
func (m *Machine) switchToUnaligned(p *checkpoint) {
	p.kind = KindUnaligned
	p.deadline = time.Time{}
	m.emit(Action{Type: ActionStartSnapshot, ID: p.id, Kind: KindUnaligned, Options: p.opts})
	m.emit(Action{Type: ActionForwardBarrier, ID: p.id, Kind: KindUnaligned, Options: p.opts})
	for i := range m.chans {
		if !m.chans[i].ended && !p.seen.has(i) {
			m.chans[i].capture = p.id
			m.emit(Action{Type: ActionCaptureStart, ID: p.id, Channel: i})
		}
	}
	m.unblockAll()
	if p.waiting == 0 {
		m.complete(p)
	}
}

func (m *Machine) stopCapture(p *checkpoint, ch int) {
	if m.chans[ch].capture == p.id {
		m.chans[ch].capture = 0
		m.emit(Action{Type: ActionCaptureStop, ID: p.id, Channel: ch})
	}
}

// complete finishes p, whose barriers all arrived (or whose channels ended).
func (m *Machine) complete(p *checkpoint) {
	// In at-least-once mode, older pending checkpoints are subsumed.
	for len(m.pending) > 0 && m.pending[0].id < p.id {
		m.abortPending(m.pending[0], ReasonSubsumed)
	}
	m.remove(p)
	m.emit(Action{Type: ActionAlignmentDone, ID: p.id, FirstBarrier: p.first, LastBarrier: m.now})
	if p.kind != KindUnaligned {
		m.emit(Action{Type: ActionStartSnapshot, ID: p.id, Kind: p.kind, Options: p.opts})
		m.emit(Action{Type: ActionForwardBarrier, ID: p.id, Kind: p.kind, Options: p.opts})
	}
	if p.kind == KindAligned {
		m.unblockAll()
	}
}

func (m *Machine) remove(p *checkpoint) {
	if i := slices.Index(m.pending, p); i >= 0 {
		m.pending = slices.Delete(m.pending, i, i+1)
	}
	if m.last == nil || p.id > m.last.id {
		m.last = p
	}
}

func (m *Machine) abortPending(p *checkpoint, r Reason) {
	m.remove(p)
	for i := range m.chans {
		if m.chans[i].capture == p.id {
			m.chans[i].capture = 0
		}
	}
	m.emit(Action{Type: ActionAbort, ID: p.id, Reason: r})
	if p.kind == KindAligned {
		m.unblockAll()
	}
}

// abortID aborts checkpoint id for r. A pending checkpoint is aborted; an id
// newer than any seen is aborted before its first barrier arrives (pending
// checkpoints older than it are subsumed); anything else is ignored.
func (m *Machine) abortID(id uint64, r Reason) error {
	if id == 0 {
		return fmt.Errorf("%s: %w", r, ErrInvalidID)
	}
	if p := m.find(id); p != nil {
		m.abortPending(p, r)
		return nil
	}
	if id <= m.latest {
		return nil
	}
	for len(m.pending) > 0 {
		m.abortPending(m.pending[0], ReasonSubsumed)
	}
	m.latest = id
	m.last = &checkpoint{id: id, seen: newBitset(len(m.chans))}
	m.emit(Action{Type: ActionAbort, ID: id, Reason: r})
	return nil
}

func (m *Machine) cancel(ev Event) error {
	if err := m.checkChannel(ev); err != nil {
		return err
	}
	return m.abortID(ev.ID, ReasonCanceled)
}

func (m *Machine) end(ev Event) error {
	if err := m.checkChannel(ev); err != nil {
		return err
	}
	m.observe(ev.Time)
	ch := ev.Channel
	m.chans[ch].ended = true
	m.open--
	// Ascending, so that an older checkpoint completes before a newer one
	// (which would otherwise subsume it).
	for _, p := range slices.Clone(m.pending) {
		if p.seen.has(ch) || m.find(p.id) == nil {
			continue
		}
		p.waiting--
		if p.kind == KindUnaligned {
			m.stopCapture(p, ch)
		}
		if p.waiting == 0 {
			m.complete(p)
		}
	}
	return nil
}

func (m *Machine) checkTimeout() {
	for _, p := range m.pending {
		if p.kind == KindAligned && !p.deadline.IsZero() && !m.now.Before(p.deadline) {
			m.switchToUnaligned(p)
			return // exactly-once modes have at most one pending checkpoint
		}
	}
}

func (m *Machine) trigger(ev Event) error {
	if len(m.chans) > 0 {
		return fmt.Errorf("trigger %d on a task with %d input channels; step their barriers instead: %w",
			ev.ID, len(m.chans), ErrNotSource)
	}
	if ev.ID == 0 {
		return fmt.Errorf("trigger: %w", ErrInvalidID)
	}
	m.observe(ev.Time)
	if ev.ID <= m.latest {
		return nil
	}
	m.latest = ev.ID
	kind := KindAligned
	switch {
	case m.cfg.Mode == ModeAtLeastOnce:
		kind = KindAtLeastOnce
	case m.cfg.Mode == ModeUnaligned && !ev.Options.Savepoint:
		kind = KindUnaligned
	}
	m.emit(Action{Type: ActionStartSnapshot, ID: ev.ID, Kind: kind, Options: ev.Options})
	m.emit(Action{Type: ActionForwardBarrier, ID: ev.ID, Kind: kind, Options: ev.Options})
	return nil
}

// String describes the machine's state on one line (for tests and logs).
func (m *Machine) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode=%s open=%d latest=%d", m.cfg.Mode, m.open, m.latest)
	if m.last != nil {
		fmt.Fprintf(&b, " last=%d/%d", m.last.id, m.last.seen.count())
	}
	if !m.now.IsZero() {
		fmt.Fprintf(&b, " now=%d", m.now.UnixMilli())
	}
	list := func(name string, f func(c channel) bool) {
		var ids []string
		for i, c := range m.chans {
			if f(c) {
				ids = append(ids, fmt.Sprint(i))
			}
		}
		if len(ids) > 0 {
			fmt.Fprintf(&b, " %s=[%s]", name, strings.Join(ids, ","))
		}
	}
	list("ended", func(c channel) bool { return c.ended })
	list("blocked", func(c channel) bool { return c.blocked })
	for i, c := range m.chans {
		if c.capture != 0 {
			fmt.Fprintf(&b, " capture[%d]=%d", i, c.capture)
		}
	}
	for _, p := range m.pending {
		fmt.Fprintf(&b, " pending{id=%d kind=%s seen=%d waiting=%d", p.id, p.kind, p.seen.count(), p.waiting)
		if !p.deadline.IsZero() {
			fmt.Fprintf(&b, " deadline=%d", p.deadline.UnixMilli())
		}
		b.WriteString("}")
	}
	return b.String()
}
