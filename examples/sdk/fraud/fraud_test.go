package fraud_test

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
	"github.com/flowrt/flow/pkg/connectors/datagen"
	"github.com/flowrt/flow/pkg/flowtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type alert struct {
	Key, Kind, Detail string
	TS                int64
}

// bruteForce applies the rules to datagen's records with plain slices and
// maps, account by account in sequence order (datagen with rate 0 stamps
// record n with ts = n).
func bruteForce(records, keys int64, window int64, limit int, factor float64, minHistory int64) []alert {
	recent := map[string][]int64{}
	count := map[string]int64{}
	sum := map[string]float64{}
	var out []alert
	for n := range records {
		k := "k" + strconv.FormatInt(datagen.KeyIndex(0, keys, n), 10)
		amount, ts := float64(datagen.Value(0, n)), n
		var kept []int64
		for _, t := range recent[k] {
			if t > ts-window {
				kept = append(kept, t)
			}
		}
		kept = append(kept, ts)
		recent[k] = kept
		if len(kept) > limit {
			out = append(out, alert{Key: k, Kind: "velocity", TS: ts, Detail: strconv.Itoa(len(kept))})
		}
		if count[k] >= minHistory && amount > factor*sum[k]/float64(count[k]) {
			out = append(out, alert{Key: k, Kind: "spike", TS: ts, Detail: strconv.FormatFloat(amount, 'f', -1, 64)})
		}
		count[k]++
		sum[k] += amount
	}
	return out
}

func readAlerts(t *testing.T, dir string) []alert {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	var out []alert
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var a alert
			if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
				t.Fatalf("%s: %q: %v", f, sc.Text(), err)
			}
			out = append(out, a)
		}
		fh.Close()
	}
	return out
}

func sorted(as []alert) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = fmt.Sprintf("%s %d %s %s", a.Key, a.TS, a.Kind, a.Detail)
	}
	sort.Strings(out)
	return out
}

// TestFraudAlertsEqualBruteForce runs the detector on the embedded cluster
// (source parallelism 1, so each account's transactions arrive in order;
// the detector at parallelism 2 with checkpoints) and compares its alerts
// with the brute-force computation of the same rules over the same input.
func TestFraudAlertsEqualBruteForce(t *testing.T) {
	const records, keys = 20000, 50
	c := flowtest.Start(t, flowtest.Options{Registry: jobs.Registry(), TaskManagers: 2, Slots: 2})
	out := t.TempDir()
	id := c.SubmitSpec(fmt.Sprintf(`name: fraud
operators:
  - {id: tx, type: datagen, config: {count: %d, keys: %d}}
  - id: fraud
    type: example-fraud
    inputs: [tx]
    keyBy: key
    parallelism: 2
    config: {velocityWindow: 300ms, velocityLimit: 9, spikeFactor: 1.9, minHistory: 5}
  - {id: alerts, type: file, inputs: [fraud], parallelism: 2, config: {path: %q}}
checkpoints: {interval: 200ms}
`, records, keys, out))
	c.AwaitStatus(id, flowtest.Finished, 2*time.Minute)

	want := sorted(bruteForce(records, keys, 300, 9, 1.9, 5))
	got := sorted(readAlerts(t, out))
	kinds := map[string]int{}
	for _, a := range bruteForce(records, keys, 300, 9, 1.9, 5) {
		kinds[a.Kind]++
	}
	if kinds["velocity"] == 0 || kinds["spike"] == 0 {
		t.Fatalf("the input triggers %v: tune the test so both rules fire", kinds)
	}
	if len(got) != len(want) {
		t.Errorf("%d alerts, want %d (%v)", len(got), len(want), kinds)
	} else {
		t.Logf("%d alerts: %v", len(got), kinds)
	}
	for i := 0; i < min(len(got), len(want)); i++ {
		if got[i] != want[i] {
			t.Fatalf("alert %d: got %q, want %q", i, got[i], want[i])
		}
	}
}
