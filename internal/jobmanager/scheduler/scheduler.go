package scheduler

import (
	"errors"
	"fmt"
	"sort"
)

// ErrNotEnoughSlots is returned (wrapped) when the cluster lacks free slots.
var ErrNotEnoughSlots = errors.New("not enough slots")

// Offer is one TaskManager's free capacity as seen by the scheduler.
type Offer struct {
	TaskManager string
	Free        int
}

// Allocate picks `need` slots spread as evenly as possible across the
// TaskManagers: each slot goes to the TaskManager that holds the fewest of
// this job's slots so far, then to the one with the most free slots, then by
// id, so the result is deterministic. Slot i of the
// result hosts subtask i of every task vertex (slot sharing, as Flink's
// default slot sharing group), so a job needs as many slots as its largest
// parallelism.
func Allocate(need int, offers []Offer) ([]string, error) {
	free := 0
	for _, o := range offers {
		free += o.Free
	}
	if need > free {
		return nil, fmt.Errorf("%w: the job needs %d slots but only %d are free across %d TaskManagers",
			ErrNotEnoughSlots, need, free, len(offers))
	}
	left := make([]Offer, len(offers))
	copy(left, offers)
	sort.Slice(left, func(i, j int) bool { return left[i].TaskManager < left[j].TaskManager })
	taken := make([]int, len(left))
	out := make([]string, 0, need)
	for len(out) < need {
		best := -1
		for i, o := range left {
			if o.Free == 0 {
				continue
			}
			if best < 0 || taken[i] < taken[best] || (taken[i] == taken[best] && o.Free > left[best].Free) {
				best = i
			}
		}
		out = append(out, left[best].TaskManager)
		left[best].Free--
		taken[best]++
	}
	return out, nil
}
