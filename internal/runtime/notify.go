package runtime

import (
	"cmp"
	"slices"
	"sync"
)

// maxPendingAborts bounds the abort notifications kept for a subtask that
// has not taken them yet. Aborts are hints (a later completion subsumes an
// aborted checkpoint's output), so the oldest are dropped first.
const maxPendingAborts = 64

// Notifications carries checkpoint completion and abort notifications from
// a TaskManager to one subtask. Unlike the control mailbox it never drops a
// completion: the highest completed id overwrites a lower one (completing
// checkpoint n subsumes every checkpoint before it, which is what every
// two-phase-commit sink relies on), and the subtask is woken through Ready.
// It also records what the subtask processed, so that a TaskManager can wait
// until a notification was acted on (a stop with savepoint cancels the
// subtasks only after every sink committed).
//
// Notify and Await are safe for concurrent use; Take and MarkProcessed are
// called by the subtask's goroutine only.
type Notifications struct {
	mu        sync.Mutex
	completed int64   // highest completed id not taken yet (0: none)
	aborted   []int64 // aborted ids not taken yet
	seen      int64   // highest completed id handed to Notify
	done      int64   // highest completed id the subtask processed
	ended     bool    // the subtask ended: nothing will be processed
	progress  chan struct{}
	ready     chan struct{}
}

// NewNotifications returns an empty mailbox.
func NewNotifications() *Notifications {
	return &Notifications{progress: make(chan struct{}), ready: make(chan struct{}, 1)}
}

// Notify records that checkpoint id completed (or was aborted) and wakes
// the subtask. A completion at or below one already recorded is ignored.
func (n *Notifications) Notify(id int64, completed bool) {
	n.mu.Lock()
	switch {
	case completed && id > n.seen:
		n.seen, n.completed = id, id
	case !completed && id > n.seen && !slices.Contains(n.aborted, id):
		if len(n.aborted) == maxPendingAborts {
			n.aborted = n.aborted[1:]
		}
		n.aborted = append(n.aborted, id)
	default:
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	select {
	case n.ready <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Ready is signalled when notifications wait to be taken.
func (n *Notifications) Ready() <-chan struct{} { return n.ready }

// Take returns the notifications waiting, in id order (it reuses buf).
func (n *Notifications) Take(buf []NotifyCheckpoint) []NotifyCheckpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	buf = buf[:0]
	slices.Sort(n.aborted)
	for _, id := range n.aborted {
		if id > n.completed || n.completed == 0 {
			buf = append(buf, NotifyCheckpoint{ID: id})
		}
	}
	n.aborted = n.aborted[:0]
	if n.completed != 0 {
		buf = append(buf, NotifyCheckpoint{ID: n.completed, Completed: true})
		slices.SortFunc(buf, func(a, b NotifyCheckpoint) int { return cmp.Compare(a.ID, b.ID) })
		n.completed = 0
	}
	return buf
}

// MarkProcessed records that the subtask acted on the completion of
// checkpoint id (every function of its chain heard of it).
func (n *Notifications) MarkProcessed(id int64) { n.processed(id, false) }

// processed records that the subtask acted on the completion of id (or,
// with end, that it ended and will process nothing more).
func (n *Notifications) processed(id int64, end bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if id <= n.done && !end {
		return
	}
	n.done = max(n.done, id)
	n.ended = n.ended || end
	close(n.progress)
	n.progress = make(chan struct{})
}

// Processed reports the highest completed checkpoint the subtask acted on,
// whether it ended, and a channel closed at the next change.
func (n *Notifications) Processed() (id int64, ended bool, changed <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.done, n.ended, n.progress
}

// End marks the subtask as ended (the TaskManager calls it when RunTask
// returns), releasing whoever awaits a notification's processing.
func (n *Notifications) End() { n.processed(0, true) }

// Await blocks until the subtask processed the completion of checkpoint id
// (or a later one), ended, or done is closed.
func (n *Notifications) Await(id int64, done <-chan struct{}) {
	for {
		got, ended, changed := n.Processed()
		if got >= id || ended {
			return
		}
		select {
		case <-changed:
		case <-done:
			return
		}
	}
}
