package window_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin"
	"github.com/flowrt/flow/pkg/connectors/datagen"
	"github.com/flowrt/flow/pkg/flowtest"
	"github.com/flowrt/flow/pkg/jobbuilder"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func lines(t *testing.T, dir string) [][]byte {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	var out [][]byte
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			out = append(out, append([]byte(nil), sc.Bytes()...))
		}
		fh.Close()
	}
	return out
}

// TestLateSideOutput: records whose window was emitted before they arrived
// reach the sink of the window's late side output, exactly those and
// nothing else, while the main output's windows count exactly the other
// records. Every 100th record from seq 1000 on is stamped 0: by then the
// source (one subtask, paced) has sent watermarks far past window [0, 100),
// so these and only these are late.
func TestLateSideOutput(t *testing.T) {
	const n, keys, size = 3000, 7, 100
	late := func(seq int64) bool { return seq >= 1000 && seq%100 == 50 }
	mainDir, lateDir := t.TempDir(), t.TempDir()
	j := jobbuilder.New("late").Parallelism(2)
	gen := j.Source("gen", "datagen").Parallelism(1).
		Config(jobbuilder.Config{"count": n, "keys": keys, "rate": 6000}).
		Watermarks(jobbuilder.Watermarks{Timestamp: "seq >= 1000 && seq % 100 == 50 ? 0 : seq", Interval: 5 * time.Millisecond})
	win := j.Operator("win", "window", gen).KeyBy("key").UID("win-v1").Config(jobbuilder.Config{"size": "100ms"})
	j.Sink("windows", "file", win).Config(jobbuilder.Config{"path": mainDir})
	j.Sink("lateOut", "file", win.SideOutput("late")).Config(jobbuilder.Config{"path": lateDir})
	graph := j.MustBuild(api.Default)

	c := flowtest.Start(t, flowtest.Options{Registry: api.Default, TaskManagers: 2, Slots: 4})
	c.AwaitStatus(c.Submit(graph), flowtest.Finished, 2*time.Minute)

	// Brute force: the late records, and each (key, window) count of the others.
	var wantLate []int64
	wantWin := map[string]int64{}
	for s := range int64(n) {
		if late(s) {
			wantLate = append(wantLate, s)
			continue
		}
		wantWin[fmt.Sprintf("k%d@%d", datagen.KeyIndex(0, keys, s), s/size*size)]++
	}
	var gotLate []int64
	for _, l := range lines(t, lateDir) {
		var r struct{ Seq, TS int64 }
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatal(err)
		}
		gotLate = append(gotLate, r.Seq)
	}
	sort.Slice(gotLate, func(i, j int) bool { return gotLate[i] < gotLate[j] })
	if !reflect.DeepEqual(gotLate, wantLate) {
		t.Errorf("late side output: seqs %v, want %v", gotLate, wantLate)
	}
	gotWin := map[string]int64{}
	for _, l := range lines(t, mainDir) {
		var w struct {
			Key   string
			Start int64
			Count int64
		}
		if err := json.Unmarshal(l, &w); err != nil || w.Key == "" {
			t.Fatalf("main output %s: not a window (%v)", l, err)
		}
		gotWin[fmt.Sprintf("%s@%d", w.Key, w.Start)] += w.Count
	}
	if !reflect.DeepEqual(gotWin, wantWin) {
		t.Errorf("windows: %d (key, window) counts, want %d", len(gotWin), len(wantWin))
		for k, v := range wantWin {
			if gotWin[k] != v {
				t.Errorf("  %s: count %d, want %d", k, gotWin[k], v)
			}
		}
	}
}

// TestSideOutputReadersKeepSavepointsValid: side-output edges do not change
// vertices or uids, so a savepoint of a job without a reader of the late
// side output restores into the job with one (and the restored windows go
// on: the window operator's state is found by its uid).
func TestSideOutputReadersKeepSavepointsValid(t *testing.T) {
	build := func(readLate bool) *jobbuilder.Job {
		j := jobbuilder.New("late-sp").Parallelism(2)
		gen := j.Source("gen", "datagen").UID("gen-v1").Config(jobbuilder.Config{"keys": 5, "rate": 4000}).
			Watermarks(jobbuilder.Watermarks{Timestamp: "ts", Interval: 5 * time.Millisecond})
		win := j.Operator("win", "window", gen).KeyBy("key").UID("win-v1").Config(jobbuilder.Config{"size": "1h"})
		j.Sink("windows", "blackhole", win).UID("windows-v1")
		if readLate {
			j.Sink("lateOut", "blackhole", win.SideOutput("late"))
		}
		return j
	}
	before, after := build(false).MustBuild(api.Default), build(true).MustBuild(api.Default)
	uids := func(g interface {
		GetVertices() []*jobgraphv1.Vertex
	}) map[string]string {
		m := map[string]string{}
		for _, v := range g.GetVertices() {
			m[v.GetId()] = v.GetUid()
		}
		return m
	}
	ub, ua := uids(before), uids(after)
	for id, uid := range ub {
		if ua[id] != uid {
			t.Errorf("operator %q: uid %q with a side-output reader, %q without", id, ua[id], uid)
		}
	}
	c := flowtest.Start(t, flowtest.Options{Registry: api.Default, TaskManagers: 1, Slots: 8})
	id := c.Submit(before)
	c.AwaitStatus(id, flowtest.Running, 30*time.Second)
	waitIn := func(id string, n float64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for c.Metric("flow_operator_records_in_total", "flow_job", id, "operator", "win") < n {
			if time.Now().After(deadline) {
				t.Fatal("the window read too few records")
			}
			time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
		}
	}
	waitIn(id, 1000)
	sp := c.Savepoint(id, true)
	id = c.SubmitRequest(&clusterv1.SubmitJobRequest{Graph: after, RestorePath: sp})
	c.AwaitStatus(id, flowtest.Running, 30*time.Second)
	waitIn(id, 1000)
	if st := c.Job(id).GetSummary().GetStatus(); st != flowtest.Running {
		t.Fatalf("restored job is %v", st)
	}
	c.Cancel(id)
}
