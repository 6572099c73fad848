package runtime

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/blobfault"
	"github.com/flowrt/flow/internal/exchange"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// TestCheckpointStorageFaults runs the keyed-count job with checkpoints on
// a fault-injecting store (internal/blobfault) that breaks the uploads of
// checkpoint 2: every subtask keeps running, checkpoint 2 is aborted
// (declined for a failed upload; refused at completion for a file a broken
// server truncated), later checkpoints complete, and the job, restored
// from the latest of them, gives exactly-once output.
func TestCheckpointStorageFaults(t *testing.T) {
	cases := []struct {
		name, backend, checkpoints string
		opts                       *clusterv1.CheckpointOptions
		rule                       blobfault.Rule
		declined                   bool // the tasks decline (else the completion fails)
	}{
		{"heap upload fails at close", `{"type":"heap"}`, `{"mode":"exactly_once"}`, nil,
			blobfault.Rule{Op: blobfault.OpClose, Key: "**/chk-2/*", Fault: blobfault.Fail(nil)}, true},
		{"heap upload fails at create", `{"type":"heap"}`, `{"mode":"exactly_once"}`, nil,
			blobfault.Rule{Op: blobfault.OpCreate, Key: "**/chk-2/count-v1-*", Fault: blobfault.Fail(nil), Times: 1}, true},
		{"pebble shared upload fails", `{"type":"pebble"}`, `{"mode":"exactly_once","incremental":true}`, &clusterv1.CheckpointOptions{Incremental: true},
			blobfault.Rule{Op: blobfault.OpWrite, Key: "**/shared/*-2-*.sst", Fault: blobfault.Fail(nil)}, true},
		{"heap state file truncated", `{"type":"heap"}`, `{"mode":"exactly_once"}`, nil,
			blobfault.Rule{Op: blobfault.OpClose, Key: "**/chk-2/count-v1-*", Fault: blobfault.Truncate(-1), Times: 1}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const records, keys, rate = 12000, 40, 6000
			var nb [6]byte
			_, _ = rand.Read(nb[:])
			fs, err := blobfault.NewMem(fmt.Sprintf("runtime-%x", nb))
			if err != nil {
				t.Fatal(err)
			}
			defer fs.Close()
			in := fs.Inject(tc.rule)

			out := filepath.Join(t.TempDir(), "out")
			g := keyedCountGraph(out, records, keys, rate, tc.backend, tc.checkpoints)
			c := newCluster(t, 2, exchange.Options{})
			coord := newTestCoordinator(t, g, fs.URL("checkpoints"), tc.opts)
			o := coord.start(jobOptions{attempt: 0, flushInterval: 5 * time.Millisecond}, 40*time.Millisecond)
			j := startJob(t, c, checkpointRegistry(), g, o)

			// Wait for two checkpoints after the broken one.
			deadline := time.Now().Add(30 * time.Second)
			for {
				coord.mu.Lock()
				n := 0
				for _, id := range coord.completed {
					if id > 2 {
						n++
					}
				}
				coord.mu.Unlock()
				if n >= 2 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no 2 completed checkpoints after checkpoint 2 within 30s: %s", coord)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if in.Fired() == 0 {
				t.Fatal("the fault never fired")
			}
			j.mu.Lock()
			ended := len(j.errs)
			j.mu.Unlock()
			if ended != 0 {
				t.Fatalf("subtasks ended while checkpoints failed: %v", j.errs)
			}
			coord.mu.Lock()
			completed, reason := slices.Clone(coord.completed), coord.aborted[2]
			declines := strings.Join(coord.declines, "\n")
			coord.mu.Unlock()
			if slices.Contains(completed, 2) || reason == "" {
				t.Fatalf("checkpoint 2 completed %v or was not aborted (reason %q): %s", completed, reason, coord)
			}
			if tc.declined && !strings.Contains(declines, "injected fault") {
				t.Fatalf("no subtask declined checkpoint 2 naming the fault: %s", declines)
			}
			t.Logf("%s", coord)

			j.cancel()
			j.wait(t, 20*time.Second)
			coord.halt()
			fs.Clear()
			o = coord.start(jobOptions{attempt: 1, flushInterval: 5 * time.Millisecond}, 40*time.Millisecond)
			j = startJob(t, c, checkpointRegistry(), g, o)
			if err := firstError(j.wait(t, 60*time.Second)); err != nil {
				t.Fatalf("restored attempt: %v", err)
			}
			coord.halt()
			checkExactlyOnceCounts(t, out, records, keys, false)
		})
	}
}
