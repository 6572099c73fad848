package storage

import (
	"fmt"
	"slices"
	"sync"

	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// Registry counts, for every shared file (FileHandle.Shared), the retained
// completed checkpoints that reference it, so incremental snapshots can
// reuse files and a file is deleted exactly when the last checkpoint using
// it is discarded. It does no I/O; JobStore drives it. Safe for concurrent
// use.
type Registry struct {
	mu   sync.Mutex
	refs map[string]int     // shared path -> number of registered checkpoints using it
	byID map[int64][]string // registered checkpoint -> its distinct shared paths
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{refs: map[string]int{}, byID: map[int64][]string{}}
}

// Register adds completed checkpoint id with the shared files of md.
// Registering an id twice is an error and changes nothing.
func (r *Registry) Register(id int64, md *checkpointv1.CheckpointMetadata) error {
	paths := SharedFiles(md)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.byID[id]; ok {
		return fmt.Errorf("register checkpoint %d in the shared-file registry: already registered", id)
	}
	r.byID[id] = paths
	for _, p := range paths {
		r.refs[p]++
	}
	return nil
}

// Release removes checkpoint id and returns, sorted, the shared files no
// registered checkpoint references any more: the caller deletes them. An
// id that is not registered releases nothing.
func (r *Registry) Release(id int64) (toDelete []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	paths, ok := r.byID[id]
	if !ok {
		return nil
	}
	delete(r.byID, id)
	for _, p := range paths {
		r.refs[p]--
		if r.refs[p] <= 0 {
			delete(r.refs, p)
			toDelete = append(toDelete, p)
		}
	}
	return toDelete
}

// Refs is the number of registered checkpoints that reference shared path p.
func (r *Registry) Refs(p string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refs[p]
}

// Checkpoints lists the registered checkpoint ids in increasing order.
func (r *Registry) Checkpoints() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]int64, 0, len(r.byID))
	for id := range r.byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// SharedFiles lists, sorted and without duplicates, the paths of md's file
// handles marked shared.
func SharedFiles(md *checkpointv1.CheckpointMetadata) []string {
	var out []string
	for _, f := range Files(md) {
		if f.GetShared() {
			out = append(out, f.GetPath())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Files lists every file handle of md (keyed, operator and in-flight state).
func Files(md *checkpointv1.CheckpointMetadata) []*checkpointv1.FileHandle {
	var out []*checkpointv1.FileHandle
	for _, op := range md.GetOperators() {
		for _, st := range op.GetSubtasks() {
			out = append(out, SubtaskFiles(st)...)
		}
	}
	return out
}

// SubtaskFiles lists every file handle of one subtask's state.
func SubtaskFiles(st *checkpointv1.SubtaskState) []*checkpointv1.FileHandle {
	var out []*checkpointv1.FileHandle
	for _, k := range st.GetKeyed() {
		for _, f := range k.GetFiles() {
			if f != nil {
				out = append(out, f)
			}
		}
	}
	for _, o := range st.GetOperatorState() {
		if f := o.GetFile(); f != nil {
			out = append(out, f)
		}
	}
	for _, in := range st.GetInFlight() {
		if f := in.GetFile(); f != nil {
			out = append(out, f)
		}
	}
	return out
}
