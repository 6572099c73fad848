package checkpoint

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Config holds the checkpointing settings of a job (the job spec's
// checkpoints section).
type Config struct {
	// Interval between periodic checkpoint triggers, measured from the
	// previous trigger. Zero (the default) disables periodic checkpoints;
	// savepoints still work.
	Interval time.Duration
	// MinPause is the least time between the end (completion or failure) of
	// a checkpoint and the next trigger. Default 0. A positive MinPause
	// implies MaxConcurrent 1.
	MinPause time.Duration
	// Timeout after which a checkpoint that has not been acknowledged by
	// every task expires. Default 10 minutes.
	Timeout time.Duration
	// MaxConcurrent is the most periodic checkpoints pending at once.
	// Default 1.
	MaxConcurrent int
	// TolerableFailures is how many consecutive checkpoint failures
	// (declined, expired, finalize failed) are tolerated; one more fails the
	// job. Default 0; negative means unlimited. Savepoint failures never
	// count.
	TolerableFailures int
	// Retain is the number of completed checkpoints kept; older ones are
	// discarded. Default 1.
	Retain int
}

// DefaultTimeout is Config.Timeout's default.
const DefaultTimeout = 10 * time.Minute

// EnsureDefaults fills zero fields with their defaults.
func (c *Config) EnsureDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 1
	}
	if c.Retain == 0 {
		c.Retain = 1
	}
}

// Validate reports whether c (after EnsureDefaults) is usable.
func (c Config) Validate() error {
	switch {
	case c.Interval < 0:
		return fmt.Errorf("checkpoint interval %s: want >= 0 (0 disables periodic checkpoints): %w", c.Interval, ErrInvalidConfig)
	case c.MinPause < 0:
		return fmt.Errorf("checkpoint min pause %s: want >= 0: %w", c.MinPause, ErrInvalidConfig)
	case c.Timeout <= 0:
		return fmt.Errorf("checkpoint timeout %s: want > 0: %w", c.Timeout, ErrInvalidConfig)
	case c.MaxConcurrent < 1:
		return fmt.Errorf("max concurrent checkpoints %d: want >= 1: %w", c.MaxConcurrent, ErrInvalidConfig)
	case c.Retain < 1:
		return fmt.Errorf("retained checkpoints %d: want >= 1: %w", c.Retain, ErrInvalidConfig)
	case c.MinPause > 0 && c.MaxConcurrent > 1:
		return fmt.Errorf("min pause %s with max concurrent %d: a min pause allows one checkpoint at a time; set max concurrent to 1 or min pause to 0: %w",
			c.MinPause, c.MaxConcurrent, ErrInvalidConfig)
	}
	return nil
}

// Resume is where a coordinator of a restarted job continues from.
type Resume struct {
	// LastID is the highest checkpoint id used before; new ids are above it.
	LastID uint64
	// Retained are the completed checkpoints already stored, oldest first;
	// they are discarded as newer ones complete, under Config.Retain.
	Retained []uint64
}

type pending struct {
	id         uint64
	savepoint  bool
	trigger    time.Time
	deadline   time.Time
	acks       []Ack  // by task index
	acked      []bool // by task index
	remaining  int
	finalizing bool
}

type runState uint8

const (
	running runState = iota
	finished
	failed
)

func (s runState) String() string {
	return [...]string{"running", "finished", "failed"}[s]
}

// Coordinator is the decision core of the checkpoint coordinator of one job
// run. It is not safe for concurrent use: one goroutine owns it.
type Coordinator struct {
	cfg      Config
	tasks    []TaskID // sorted
	index    map[TaskID]int
	done     []bool // task finished
	nrunning int
	state    runState
	now      time.Time
	lastID   uint64
	nextDue  time.Time // earliest periodic trigger
	lastEnd  time.Time // end of the latest checkpoint, for MinPause
	latest   uint64    // latest completed checkpoint
	failures int       // consecutive counted failures
	pending  []*pending
	retained []uint64
	out      []Action
}

// New returns a Coordinator for a job whose subtasks are tasks, created at
// now, continuing from resume (zero for a new job). The first periodic
// checkpoint is due at now + Interval.
func New(cfg Config, tasks []TaskID, now time.Time, resume Resume) (*Coordinator, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(tasks) == 0 {
		return nil, fmt.Errorf("no tasks: a job has at least one subtask: %w", ErrInvalidConfig)
	}
	c := &Coordinator{
		cfg:      cfg,
		tasks:    slices.Clone(tasks),
		index:    make(map[TaskID]int, len(tasks)),
		done:     make([]bool, len(tasks)),
		nrunning: len(tasks),
		now:      now,
		lastID:   resume.LastID,
		nextDue:  now.Add(cfg.Interval),
		retained: slices.Clone(resume.Retained),
	}
	slices.SortFunc(c.tasks, func(a, b TaskID) int {
		switch {
		case a.less(b):
			return -1
		case b.less(a):
			return 1
		}
		return 0
	})
	for i, t := range c.tasks {
		if t.Vertex == "" || t.Subtask < 0 {
			return nil, fmt.Errorf("task %s: want a vertex uid and a subtask index >= 0: %w", t, ErrInvalidConfig)
		}
		if _, dup := c.index[t]; dup {
			return nil, fmt.Errorf("task %s listed twice: %w", t, ErrInvalidConfig)
		}
		c.index[t] = i
	}
	var prev uint64
	for _, id := range c.retained {
		if id <= prev || id > resume.LastID {
			return nil, fmt.Errorf("retained checkpoints %v with last id %d: want ascending ids <= the last id: %w",
				resume.Retained, resume.LastID, ErrInvalidConfig)
		}
		prev = id
	}
	if n := len(c.retained); n > 0 {
		c.latest = c.retained[n-1]
	}
	return c, nil
}

// Config returns the configuration, with defaults filled.
func (c *Coordinator) Config() Config { return c.cfg }

// Retained returns the ids of the retained completed checkpoints, oldest
// first.
func (c *Coordinator) Retained() []uint64 { return slices.Clone(c.retained) }

// Pending returns the ids of the checkpoints triggered and not yet completed
// or aborted, ascending.
func (c *Coordinator) Pending() []uint64 {
	ids := make([]uint64, len(c.pending))
	for i, p := range c.pending {
		ids[i] = p.id
	}
	return ids
}

// Stopped reports whether the coordinator triggers nothing any more (every
// task finished, or it failed the job).
func (c *Coordinator) Stopped() bool { return c.state != running }

// Step applies ev and returns the actions to execute, in order. The returned
// slice is owned by the Coordinator and valid until the next Step. On error
// the state is unchanged and no action is returned.
func (c *Coordinator) Step(ev Event) ([]Action, error) {
	c.out = c.out[:0]
	var err error
	switch ev.Type {
	case EventTick:
		c.observe(ev.Time)
		c.tick()
	case EventAck:
		err = c.ack(ev)
	case EventDecline:
		err = c.decline(ev)
	case EventFinalized:
		err = c.finalized(ev)
	case EventTaskFinished:
		err = c.taskFinished(ev)
	case EventJobFinished:
		c.observe(ev.Time)
		c.jobFinished()
	case EventSavepoint:
		if c.state != running {
			return nil, fmt.Errorf("savepoint requested after the job %s: %w", c.state, ErrStopped)
		}
		c.observe(ev.Time)
		c.trigger(true)
	default:
		err = fmt.Errorf("event type %d: %w", ev.Type, ErrUnknownEvent)
	}
	if err != nil {
		c.out = c.out[:0]
		return nil, err
	}
	return c.out, nil
}

func (c *Coordinator) emit(a Action) { c.out = append(c.out, a) }

func (c *Coordinator) observe(t time.Time) {
	if !t.IsZero() && t.After(c.now) {
		c.now = t
	}
}

func (c *Coordinator) find(id uint64) *pending {
	for _, p := range c.pending {
		if p.id == id {
			return p
		}
	}
	return nil
}

// checkRef validates the task and checkpoint id of an ack or decline.
func (c *Coordinator) checkRef(ev Event) (int, error) {
	i, ok := c.index[ev.Task]
	if !ok {
		return 0, fmt.Errorf("%s of checkpoint %d from task %s, which is not part of the job: %w", ev.Type, ev.ID, ev.Task, ErrUnknownTask)
	}
	if ev.ID == 0 || ev.ID > c.lastID {
		return 0, fmt.Errorf("%s of checkpoint %d from task %s; the last checkpoint triggered is %d: %w",
			ev.Type, ev.ID, ev.Task, c.lastID, ErrUnknownCheckpoint)
	}
	return i, nil
}

func (c *Coordinator) tick() {
	for _, p := range slices.Clone(c.pending) {
		if !p.finalizing && !c.now.Before(p.deadline) && c.find(p.id) != nil {
			c.fail(p, ReasonExpired)
		}
	}
	if c.state != running || c.cfg.Interval == 0 || c.now.Before(c.nextDue) {
		return
	}
	n := 0
	for _, p := range c.pending {
		if !p.savepoint {
			n++
		}
	}
	if n >= c.cfg.MaxConcurrent {
		return
	}
	if c.cfg.MinPause > 0 && !c.lastEnd.IsZero() && c.now.Before(c.lastEnd.Add(c.cfg.MinPause)) {
		return
	}
	c.trigger(false)
}

func (c *Coordinator) trigger(savepoint bool) {
	c.lastID++
	p := &pending{
		id:        c.lastID,
		savepoint: savepoint,
		trigger:   c.now,
		deadline:  c.now.Add(c.cfg.Timeout),
		acks:      make([]Ack, len(c.tasks)),
		acked:     make([]bool, len(c.tasks)),
		remaining: c.nrunning,
	}
	for i, t := range c.tasks {
		if c.done[i] {
			p.acks[i] = Ack{Task: t, Finished: true}
			p.acked[i] = true
		}
	}
	c.pending = append(c.pending, p)
	if !savepoint {
		c.nextDue = c.now.Add(c.cfg.Interval)
	}
	c.emit(Action{Type: ActionTrigger, ID: p.id, Savepoint: savepoint, Time: c.now})
}

func (c *Coordinator) ack(ev Event) error {
	i, err := c.checkRef(ev)
	if err != nil {
		return err
	}
	p := c.find(ev.ID)
	if p == nil {
		c.observe(ev.Time)
		c.emit(Action{Type: ActionDiscardLate, ID: ev.ID, Task: ev.Task, Handle: ev.Handle})
		return nil
	}
	if p.acked[i] && p.acks[i].Finished {
		return fmt.Errorf("task %s acknowledged checkpoint %d after it finished: %w", ev.Task, ev.ID, ErrTaskFinished)
	}
	if p.acked[i] {
		return fmt.Errorf("task %s acknowledged checkpoint %d twice: %w", ev.Task, ev.ID, ErrDuplicateAck)
	}
	c.observe(ev.Time)
	p.acks[i] = Ack{Task: ev.Task, Handle: ev.Handle, Stats: ev.Stats}
	p.acked[i] = true
	c.record(p)
	return nil
}

// record notes one more acknowledgement of p and finalizes p after the last.
func (c *Coordinator) record(p *pending) {
	p.remaining--
	if p.remaining == 0 {
		p.finalizing = true
		c.emit(Action{Type: ActionFinalize, ID: p.id, Savepoint: p.savepoint, TriggerTime: p.trigger, Acks: slices.Clone(p.acks)})
	}
}

func (c *Coordinator) decline(ev Event) error {
	if _, err := c.checkRef(ev); err != nil {
		return err
	}
	c.observe(ev.Time)
	if p := c.find(ev.ID); p != nil && !p.finalizing {
		r := ev.Reason
		if r == 0 {
			r = ReasonDeclined
		}
		c.fail(p, r)
	}
	return nil
}

func (c *Coordinator) finalized(ev Event) error {
	p := c.find(ev.ID)
	if p == nil || !p.finalizing {
		return fmt.Errorf("finalized checkpoint %d, which is not waiting for its metadata: %w", ev.ID, ErrNotFinalizing)
	}
	c.observe(ev.Time)
	switch {
	case ev.Err != nil:
		c.fail(p, ReasonFinalizeFailed)
	case !p.savepoint && p.id < c.latest:
		c.fail(p, ReasonSubsumed)
	default:
		c.complete(p)
	}
	return nil
}

func (c *Coordinator) remove(p *pending) {
	if i := slices.Index(c.pending, p); i >= 0 {
		c.pending = slices.Delete(c.pending, i, i+1)
	}
}

func (c *Coordinator) complete(p *pending) {
	c.remove(p)
	c.emit(Action{Type: ActionComplete, ID: p.id, Savepoint: p.savepoint, Time: c.now, TriggerTime: p.trigger})
	if p.savepoint {
		return
	}
	c.failures = 0
	c.latest = p.id
	c.lastEnd = c.now
	for _, q := range slices.Clone(c.pending) {
		if q.id < p.id && !q.savepoint && !q.finalizing {
			c.fail(q, ReasonSubsumed)
		}
	}
	c.retained = append(c.retained, p.id)
	for len(c.retained) > c.cfg.Retain {
		c.emit(Action{Type: ActionDiscard, ID: c.retained[0]})
		c.retained = c.retained[1:]
	}
}

// fail aborts p for r and fails the job when too many failures happened in
// a row.
func (c *Coordinator) fail(p *pending, r Reason) {
	c.remove(p)
	var acks []Ack
	for i, ok := range p.acked {
		if ok && !p.acks[i].Finished {
			acks = append(acks, p.acks[i])
		}
	}
	counts := r.Counts() && !p.savepoint
	if counts {
		c.failures++
	}
	c.emit(Action{Type: ActionAbort, ID: p.id, Savepoint: p.savepoint, Reason: r, Failures: c.failures, Acks: acks})
	if p.savepoint {
		return
	}
	c.lastEnd = c.now
	if counts && c.state == running && c.cfg.TolerableFailures >= 0 && c.failures > c.cfg.TolerableFailures {
		c.state = failed
		c.emit(Action{Type: ActionFailJob, Failures: c.failures})
		c.abortAll(ReasonJobFailed)
	}
}

// abortAll aborts every pending checkpoint whose metadata is not being
// written.
func (c *Coordinator) abortAll(r Reason) {
	for _, p := range slices.Clone(c.pending) {
		if !p.finalizing && c.find(p.id) != nil {
			c.fail(p, r)
		}
	}
}

func (c *Coordinator) taskFinished(ev Event) error {
	i, ok := c.index[ev.Task]
	if !ok {
		return fmt.Errorf("task %s finished, but it is not part of the job: %w", ev.Task, ErrUnknownTask)
	}
	c.observe(ev.Time)
	if c.done[i] {
		return nil
	}
	c.done[i] = true
	c.nrunning--
	for _, p := range slices.Clone(c.pending) {
		if !p.acked[i] {
			p.acks[i] = Ack{Task: ev.Task, Finished: true}
			p.acked[i] = true
			c.record(p)
		}
	}
	if c.nrunning == 0 {
		c.jobFinished()
	}
	return nil
}

func (c *Coordinator) jobFinished() {
	for i := range c.done {
		c.done[i] = true
	}
	c.nrunning = 0
	if c.state == running {
		c.state = finished
	}
	c.abortAll(ReasonFinished)
}

// String describes the coordinator's state on one line (for tests and logs).
func (c *Coordinator) String() string {
	var b strings.Builder
	ms := func(t time.Time) int64 { return t.UnixMilli() }
	fmt.Fprintf(&b, "%s now=%d last-id=%d latest=%d failures=%d", c.state, ms(c.now), c.lastID, c.latest, c.failures)
	if c.cfg.Interval > 0 {
		fmt.Fprintf(&b, " next-due=%d", ms(c.nextDue))
	}
	if !c.lastEnd.IsZero() {
		fmt.Fprintf(&b, " last-end=%d", ms(c.lastEnd))
	}
	if c.nrunning != len(c.tasks) {
		fmt.Fprintf(&b, " running=%d/%d", c.nrunning, len(c.tasks))
	}
	for _, p := range c.pending {
		fmt.Fprintf(&b, " pending{id=%d", p.id)
		if p.savepoint {
			b.WriteString(" savepoint")
		}
		fmt.Fprintf(&b, " remaining=%d deadline=%d", p.remaining, ms(p.deadline))
		if p.finalizing {
			b.WriteString(" finalizing")
		}
		b.WriteString("}")
	}
	fmt.Fprintf(&b, " retained=%v", c.retained)
	return b.String()
}
