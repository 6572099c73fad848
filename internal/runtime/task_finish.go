package runtime

import (
	"errors"
	"fmt"
	"time"

	"github.com/flowrt/flow/pkg/api"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// This file holds the end of a task: Finish in chain order, the final
// flush, and the cleanup of what setup opened.

// finish ends a task whose input ended: final watermark, Finish in chain
// order, flush, finish the partitions and wait until consumers got the end.
func (t *task) finish() error {
	t.declineRemaining()
	if t.outIdle {
		t.setOutIdle(false)
	}
	if t.lastWM < api.MaxWatermark {
		t.processWatermark(api.MaxWatermark)
	}
	if t.err != nil {
		return t.err
	}
	t.curChannel, t.curRecord = -1, 0
	for _, l := range t.links {
		t.callFinish(l)
		if t.err != nil {
			return t.err
		}
	}
	if t.sink != nil {
		t.callSinkFinish()
		if t.err != nil {
			return t.err
		}
	}
	t.flushOutputs()
	t.publishSlow(time.Now(), true)
	if t.err != nil {
		return t.err
	}
	for _, p := range t.parts {
		if err := p.Finish(); err != nil {
			return fmt.Errorf("task %s (subtask %d of %d): finish partition: %w", t.d.GetId().GetTask(), t.subtask, t.parallelism, err)
		}
	}
	for _, p := range t.parts {
		select {
		case <-p.Consumed():
		case <-t.ctx.Done():
			return t.ctx.Err()
		}
	}
	return t.awaitNotifications()
}

func (t *task) callFinish(l *opLink) {
	defer t.recoverUser(l.vi)
	if err := l.op.Finish(l.next); err != nil {
		t.fail(fmt.Errorf("%s: finish: %w", t.opName(l.vi), err))
	}
}

func (t *task) callSinkFinish() {
	defer t.recoverUser(t.sink.vi)
	if err := t.sink.sink.Finish(); err != nil {
		t.fail(fmt.Errorf("%s: finish: %w", t.opName(t.sink.vi), err))
	}
}

// cleanup releases everything the task holds; it runs on every exit.
func (t *task) cleanup() error {
	for _, p := range t.parts {
		p.Release()
	}
	for _, gs := range t.gates {
		_ = gs.gate.Close()
	}
	var errs []error
	closeUser := func(vi *vertexInfo, c func() error) {
		defer func() {
			if p := recover(); p != nil {
				errs = append(errs, fmt.Errorf("%s: close: panic: %v", t.opName(vi), p))
			}
		}()
		if err := c(); err != nil {
			errs = append(errs, fmt.Errorf("%s: close: %w", t.opName(vi), err))
		}
	}
	if t.source != nil {
		closeUser(t.srcVI, t.source.Close)
	}
	for _, l := range t.links {
		closeUser(l.vi, l.op.Close)
	}
	if t.sink != nil {
		closeUser(t.sink.vi, t.sink.sink.Close)
	}
	errs = append(errs, t.closeStates()...)
	if t.metrics != nil {
		t.publishSlow(time.Now(), true)
	}
	if t.reg != nil {
		t.reg.unregisterAll()
	}
	if t.timer != nil {
		t.timer.Stop()
	}
	return errors.Join(errs...)
}

// vertexKind maps a graph vertex's kind to the registry's.
func vertexKind(k jobgraphv1.VertexKind) api.Kind {
	switch k {
	case jobgraphv1.VertexKind_VERTEX_KIND_SOURCE:
		return api.KindSource
	case jobgraphv1.VertexKind_VERTEX_KIND_SINK:
		return api.KindSink
	}
	return api.KindOperator
}
