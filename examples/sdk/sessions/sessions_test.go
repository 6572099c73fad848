package sessions_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flowrt/flow/examples/sdk/jobs"
	"github.com/flowrt/flow/examples/sdk/sessions"
	"github.com/flowrt/flow/pkg/connectors/datagen"
	"github.com/flowrt/flow/pkg/flowtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bruteForce splits each user's events (datagen, rate 0: record n at
// ts = n) into sessions: a new one starts when an event comes gap or more
// after the previous one.
func bruteForce(records, keys, gap, types int64) []string {
	open := map[string]*sessions.Summary{}
	var out []string
	emit := func(s *sessions.Summary) {
		b, _ := json.Marshal(s)
		out = append(out, string(b))
	}
	for n := range records {
		k := "k" + strconv.FormatInt(datagen.KeyIndex(0, keys, n), 10)
		s := open[k]
		if s != nil && n >= s.End+gap {
			emit(s)
			s = nil
		}
		if s == nil {
			s = &sessions.Summary{Key: k, Start: n, Counts: map[string]int64{}}
			open[k] = s
		}
		s.End = n
		s.Events++
		s.Counts["t"+strconv.FormatInt(datagen.Value(0, n)%types, 10)]++
	}
	for _, s := range open {
		emit(s)
	}
	sort.Strings(out)
	return out
}

// TestSessionsEqualBruteForce runs the aggregator on the embedded cluster
// (one source subtask with event-time watermarks; the aggregator at
// parallelism 2) and compares its sessions with the brute-force split.
func TestSessionsEqualBruteForce(t *testing.T) {
	const records, keys, gap, types = 20000, 40, 120, 3
	c := flowtest.Start(t, flowtest.Options{Registry: jobs.Registry(), TaskManagers: 2, Slots: 2})
	out := t.TempDir()
	id := c.SubmitSpec(fmt.Sprintf(`name: sessions
operators:
  - id: events
    type: datagen
    config: {count: %d, keys: %d}
    watermarks: {timestamp: ts, interval: 1ms}
  - id: sessions
    type: example-sessions
    inputs: [events]
    keyBy: key
    parallelism: 2
    config: {gap: %dms, types: %d}
  - {id: out, type: file, inputs: [sessions], parallelism: 2, config: {path: %q}}
checkpoints: {interval: 200ms}
`, records, keys, gap, types, out))
	c.AwaitStatus(id, flowtest.Finished, 2*time.Minute)

	want := bruteForce(records, keys, gap, types)
	var got []string
	files, _ := filepath.Glob(filepath.Join(out, "part-*"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			got = append(got, sc.Text())
		}
		fh.Close()
	}
	sort.Strings(got)
	if len(want) < 2*keys {
		t.Fatalf("the input gives only %d sessions for %d users: tune gap so sessions split", len(want), keys)
	}
	if len(got) != len(want) {
		t.Errorf("%d sessions, want %d", len(got), len(want))
	}
	for i := 0; i < min(len(got), len(want)); i++ {
		if got[i] != want[i] {
			t.Fatalf("session %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	t.Logf("%d sessions of %d users", len(got), keys)
}
