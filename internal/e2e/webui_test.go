package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestWebUI opens the JobManager's web UI in a real headless chromium
// against a real cluster running a checkpointed job: the overview lists the
// job and the TaskManager, the job page shows the graph's vertices, and a
// completed checkpoint's timeline has a row for every subtask. Screenshots
// go to $FLOW_ARTIFACTS (default: the test's temp dir; the path is logged).
func TestWebUI(t *testing.T) {
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		// Never skipped: a skipped test proves nothing. make test installs it.
		t.Fatal("chromium is not installed: run make tools (Debian package chromium)")
	}
	dir := t.TempDir()
	artifacts := os.Getenv("FLOW_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join(dir, "screenshots")
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}

	jm := start(t, "jobmanager", "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "jm"), "--log-format", "text")
	jmAddr, jmHTTP := jm.addresses()
	start(t, "taskmanager", "--jobmanager", jmAddr, "--slots", "3", "--id", "tm-ui",
		"--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "tm"))
	c := client(t, jmAddr)
	waitFor(t, 20*time.Second, "an active TaskManager", func() bool { return taskManagers(t, c)["tm-ui"] == active })
	spec := fmt.Sprintf(`name: ui-count
parallelism: 2
operators:
  - id: src
    type: datagen
    uid: src-v1
    config: {keys: 20, rate: 500}
  - id: count
    type: count
    uid: count-v1
    inputs: [src]
    keyBy: key
  - id: sink
    type: blackhole
    inputs: [count]
checkpoints:
  interval: 300ms
  storage: %q
`, "file://"+filepath.Join(dir, "checkpoints"))
	var sub, bpJob struct {
		JobID string `json:"job_id"`
	}
	base := "http://" + jmHTTP
	restDo(t, "POST", base+"/api/v1/jobs", spec, http.StatusCreated, &sub)
	// A backpressured job: an unthrottled datagen with event time feeds a
	// keyed count on Pebble, far slower per record than the source, so the
	// source waits for output buffers most of the time.
	restDo(t, "POST", base+"/api/v1/jobs", `name: ui-backpressure
parallelism: 1
operators:
  - id: src
    type: datagen
    uid: src-v1
    watermarks: {timestamp: ts, interval: 100ms}
    config: {keys: 200000}
  - id: count
    type: count
    uid: count-v1
    inputs: [src]
    keyBy: key
  - id: sink
    type: blackhole
    inputs: [count]
stateBackend:
  type: pebble
`, http.StatusCreated, &bpJob)
	var bp struct {
		Level string `json:"level"`
	}
	waitFor(t, 60*time.Second, "the backpressured job's source at level HIGH", func() bool {
		restDo(t, "GET", base+"/api/v1/jobs/"+bpJob.JobID+"/vertices/src/backpressure", "", http.StatusOK, &bp)
		return bp.Level == "HIGH"
	})
	var cks struct {
		LatestCompletedID int64 `json:"latest_completed_id"`
	}
	waitFor(t, 30*time.Second, "a completed checkpoint", func() bool {
		restDo(t, "GET", base+"/api/v1/jobs/"+sub.JobID+"/checkpoints", "", http.StatusOK, &cks)
		return cks.LatestCompletedID > 0
	})

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.UserDataDir(filepath.Join(dir, "chromium-profile")),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.NoFirstRun, chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	shot := func(name string) error {
		shoot := chromedp.FullScreenshot(100)
		if name == "job-backpressure" {
			shoot = chromedp.CaptureScreenshot() // the graph and subtasks, not the long configuration
		}
		png, err := chromedp.Run(ctx, shoot)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(artifacts, name+".png"), png, 0o644)
	}
	count := func(sel string) (int, error) {
		return chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
	}
	var overview, graph, ckText string
	var vertices, timelineRows, errors int
	var srcLevel, srcClass, srcWM, countWM, bpGraph string
	err := func() (err error) {
		if err = chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#jobs tr.job"))); err != nil {
			return fmt.Errorf("overview: %w", err)
		}
		if overview, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main"))); err != nil {
			return err
		}
		if err = shot("overview"); err != nil {
			return err
		}
		if err = chromedp.Do(ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#jobs tr.job a[href="#/jobs/%s"]`, sub.JobID))), chromedp.WaitVisible(chromedp.CSS("#graph .vertex"))); err != nil {
			return fmt.Errorf("job page: %w", err)
		}
		if vertices, err = count("#graph .vertex"); err != nil {
			return err
		}
		if graph, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#graph"))); err != nil {
			return err
		}
		if err = shot("job"); err != nil {
			return err
		}
		if err = chromedp.Do(ctx, chromedp.Navigate(fmt.Sprintf("%s/#/jobs/%s/checkpoints/%d", base, sub.JobID, cks.LatestCompletedID)),
			chromedp.WaitVisible(chromedp.CSS("#timeline .subtask"))); err != nil {
			return fmt.Errorf("checkpoint page: %w", err)
		}
		if timelineRows, err = count("#timeline .subtask"); err != nil {
			return err
		}
		if errors, err = count("#error"); err != nil {
			return err
		}
		if ckText, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main"))); err != nil {
			return err
		}
		if err = shot("checkpoint"); err != nil {
			return err
		}
		// The backpressured job: the source's box is HIGH (red) and both
		// vertices show their watermark as a time.
		src, cnt := `#graph .vertex[data-task="src"]`, `#graph .vertex[data-task="count"]`
		if err = chromedp.Do(ctx, chromedp.Navigate(base+"/#/jobs/"+bpJob.JobID), chromedp.WaitVisible(chromedp.CSS(src+" .wm")),
			chromedp.WaitVisible(chromedp.CSS(cnt+" .wm"))); err != nil {
			return fmt.Errorf("backpressured job page: %w", err)
		}
		attr := func(sel, name string) (string, error) {
			return chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf("document.querySelector(%q).getAttribute(%q) || ''", sel, name)))
		}
		// The page refreshes every 2 s: wait until the count's watermark
		// arrived too (its first sample may precede the first watermark).
		ready := fmt.Sprintf(`(() => { const s = document.querySelector(%q), w = document.querySelector(%q), c = document.querySelector(%q);
			return !!(s && w && c && s.dataset.level === "HIGH" && w.dataset.watermark && c.dataset.watermark); })()`, src, src+" .wm", cnt+" .wm")
		if err = chromedp.Do(ctx, chromedp.Poll[chromedp.Void](ready, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Logf("waiting for HIGH and both watermarks: %v", err) // the checks below say what is missing
		}
		if srcLevel, err = attr(src, "data-level"); err != nil {
			return err
		}
		if srcWM, err = attr(src+" .wm", "data-watermark"); err != nil {
			return err
		}
		if countWM, err = attr(cnt+" .wm", "data-watermark"); err != nil {
			return err
		}
		if srcClass, err = attr(src, "class"); err != nil {
			return err
		}
		if bpGraph, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#graph"))); err != nil {
			return err
		}
		return shot("job-backpressure")
	}()
	t.Logf("screenshots in %s", artifacts)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	if !strings.Contains(overview, "ui-count") || !strings.Contains(overview, "tm-ui") || !strings.Contains(overview, "RUNNING") {
		t.Errorf("overview does not show the running job and the TaskManager:\n%s", overview)
	}
	// datagen -> keyBy -> count+blackhole: two tasks.
	if vertices != 2 || !strings.Contains(graph, "count → sink") || !strings.Contains(graph, "parallelism 2") {
		t.Errorf("job graph: %d vertices, text %q; want src and count → sink, parallelism 2", vertices, graph)
	}
	if timelineRows != 4 || errors != 0 || !(strings.Contains(ckText, "COMPLETED") || strings.Contains(ckText, "DISCARDED")) {
		t.Errorf("checkpoint %d timeline: %d subtask rows (want 4), %d errors:\n%s", cks.LatestCompletedID, timelineRows, errors, ckText)
	}
	if srcLevel != "HIGH" || !strings.Contains(srcClass, "vertex-bp-high") || !strings.Contains(bpGraph, "backpressure HIGH") {
		t.Errorf("backpressured source: level %q, class %q; want HIGH, vertex-bp-high:\n%s", srcLevel, srcClass, bpGraph)
	}
	for name, wm := range map[string]string{"src": srcWM, "count": countWM} {
		if _, err := time.Parse(time.RFC3339Nano, wm); err != nil {
			t.Errorf("%s's watermark %q is not a time: %v", name, wm, err)
		}
	}
	if !strings.Contains(bpGraph, "watermark 1970-01-01 ") || !strings.Contains(bpGraph, " UTC") || !strings.Contains(bpGraph, "/s") {
		t.Errorf("the graph does not show records/s and the watermarks as times:\n%s", bpGraph)
	}
	for _, name := range []string{"overview", "job", "checkpoint", "job-backpressure"} {
		if st, err := os.Stat(filepath.Join(artifacts, name+".png")); err != nil || st.Size() == 0 {
			t.Errorf("screenshot %s: %v", name, err)
		}
	}
}
