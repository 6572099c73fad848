package runtime

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// This file holds the asynchronous part of a checkpoint: the upload of the
// captured state and in-flight buffers to storage, then the acknowledgement.

// maybeUpload starts pc's upload once its snapshot is taken, its barrier
// forwarded and its input side complete: every barrier arrived (or its
// channel ended) and the buffers its priority barriers overtook were read.
func (t *task) maybeUpload(pc *pendingCheckpoint) {
	if !pc.synced || !pc.forwarded || !pc.aligned || pc.failed != nil || t.ck.pending[pc.id] != pc {
		return
	}
	for _, o := range t.ck.overtaken {
		if o.n > 0 && o.id == pc.id {
			return
		}
	}
	t.startUpload(pc)
}

// startUpload hands a synced and aligned checkpoint to a background
// goroutine that writes it to storage and acknowledges it.
func (t *task) startUpload(pc *pendingCheckpoint) {
	delete(t.ck.pending, pc.id)
	if t.env.Checkpoints == nil {
		pc.discard()
		return
	}
	store, err := t.storage(pc.opts.GetStorageBase())
	if err != nil {
		pc.failed = err
		t.failCheckpoint(pc, "declined: "+err.Error())
		return
	}
	up := &upload{
		id: pc.id, store: store, opts: pc.opts, subtask: t.subtask, ops: pc.ops, inFlight: pc.inFlight, outFlight: pc.outFlight,
		timing: &clusterv1.TaskCheckpointTiming{Task: t.d.GetId().GetTask(), Subtask: int32(t.subtask),
			AlignmentMs: pc.alignment.Milliseconds(), SyncMs: pc.syncDur.Milliseconds()},
	}
	pc.ops, pc.inFlight, pc.outFlight = nil, nil, nil
	if !slices.Contains(t.ck.aborted, pc.id) {
		t.ck.awaiting = append(t.ck.awaiting, pc.id)
	}
	r, log, ctx := t.env.Checkpoints, t.log, t.ck.upCtx
	t.ck.wg.Add(1)
	go func() {
		defer t.ck.wg.Done()
		up.run(ctx, r, log)
	}()
}

// upload is one checkpoint's background part in one subtask. It holds
// only immutable snapshot data.
type upload struct {
	id        int64
	store     *storage.Storage
	opts      *clusterv1.CheckpointOptions
	subtask   int
	ops       []pendingOp
	inFlight  map[int][]byte
	outFlight []byte
	timing    *clusterv1.TaskCheckpointTiming
}

func (u *upload) run(ctx context.Context, r CheckpointResponder, log interface {
	Warn(string, ...any)
}) {
	start := time.Now()
	states, err := u.write(ctx)
	u.timing.AsyncMs = time.Since(start).Milliseconds()
	cctx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer cancel()
	if err != nil {
		if ctx.Err() != nil {
			return // the task ended
		}
		log.Warn("checkpoint upload failed", "checkpoint", u.id, "err", err)
		if derr := r.Decline(cctx, u.id, "declined: "+err.Error()); derr != nil && ctx.Err() == nil {
			log.Warn("decline checkpoint", "checkpoint", u.id, "err", derr)
		}
		return
	}
	for _, st := range states {
		u.timing.StateSize += st.GetStateSize()
		u.timing.UploadedSize += st.GetUploadedSize()
	}
	if err := r.Acknowledge(cctx, u.id, states, u.timing); err != nil && ctx.Err() == nil {
		log.Warn("acknowledge checkpoint", "checkpoint", u.id, "err", err)
	}
}

func (u *upload) write(ctx context.Context) (map[string]*checkpointv1.SubtaskState, error) {
	shared := ""
	if u.opts.GetIncremental() && !u.opts.GetSavepoint() {
		if job, _, ok := strings.Cut(u.opts.GetLocation(), "/"); ok {
			shared = storage.SharedDir(job)
		}
	}
	states := make(map[string]*checkpointv1.SubtaskState, len(u.ops))
	var err error
	for _, op := range u.ops {
		if err != nil {
			_ = op.p.Discard()
			continue
		}
		name := fmt.Sprintf("%s-%d", url.PathEscape(op.uid), u.subtask)
		var st *checkpointv1.SubtaskState
		st, err = op.p.Async(ctx, snapshot.Target{Store: u.store, Dir: u.opts.GetLocation(), SharedDir: shared, Name: name})
		if err != nil {
			err = fmt.Errorf("operator uid %q: %w", op.uid, err)
			continue
		}
		if op.head {
			chans := make([]int, 0, len(u.inFlight))
			for ch := range u.inFlight {
				chans = append(chans, ch)
			}
			sort.Ints(chans)
			for _, ch := range chans {
				h, werr := u.writeInFlight(ctx, fmt.Sprintf("%s-inflight-%d", name, ch), u.inFlight[ch])
				if werr != nil {
					err = werr
					break
				}
				st.InFlight = append(st.InFlight, &checkpointv1.InFlightHandle{Channel: int32(ch), File: h})
				st.StateSize += h.GetSize()
				st.UploadedSize += h.GetSize()
			}
		}
		if op.tail && len(u.outFlight) > 0 && err == nil {
			h, werr := u.writeInFlight(ctx, name+"-inflight-out", u.outFlight)
			if werr != nil {
				err = werr
			} else {
				st.InFlight = append(st.InFlight, &checkpointv1.InFlightHandle{Channel: outputInFlightChannel, File: h})
				st.StateSize += h.GetSize()
				st.UploadedSize += h.GetSize()
			}
		}
		states[op.uid] = st
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint %d: %w", u.id, err)
	}
	return states, nil
}

func (u *upload) writeInFlight(ctx context.Context, name string, body []byte) (*checkpointv1.FileHandle, error) {
	rel := path.Join(u.opts.GetLocation(), name)
	data := encodeInFlightFile(body)
	if err := u.store.WriteFile(ctx, rel, data); err != nil {
		return nil, fmt.Errorf("write in-flight data %s: %w", rel, err)
	}
	return &checkpointv1.FileHandle{Path: rel, Size: int64(len(data))}, nil
}
