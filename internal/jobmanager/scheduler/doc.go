// Package scheduler decides where a job's subtasks run: Allocate picks
// the slots of one attempt from the TaskManagers' free slots, spread as
// evenly as possible and deterministically. It is pure; the JobManager's
// scheduling pass (slots to waiting jobs in submission order) and the
// registry's slot accounting call it.
package scheduler
