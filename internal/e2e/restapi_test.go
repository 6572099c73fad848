package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRESTAPI drives the JobManager's REST API on a real cluster: submit a
// spec, read the job, its checkpoints and one checkpoint's per-subtask
// timings, take a savepoint, stop with a savepoint, cancel; errors are JSON
// with the HTTP status of their meaning.
func TestRESTAPI(t *testing.T) {
	dir := t.TempDir()
	jm := start(t, "jobmanager", "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "jm"), "--log-format", "text")
	jmAddr, jmHTTP := jm.addresses()
	start(t, "taskmanager", "--jobmanager", jmAddr, "--slots", "4", "--id", "tm-0",
		"--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "tm0"))
	base := "http://" + jmHTTP + "/api/v1"
	c := client(t, jmAddr)
	waitFor(t, 20*time.Second, "an active TaskManager", func() bool { return taskManagers(t, c)["tm-0"] == active })

	spec := fmt.Sprintf(`name: rest-count
parallelism: 2
operators:
  - id: src
    type: datagen
    uid: src-v1
    config: {keys: 20, rate: 1000}
  - id: count
    type: count
    uid: count-v1
    inputs: [src]
    keyBy: key
  - id: sink
    type: blackhole
    inputs: [count]
checkpoints:
  interval: 200ms
  storage: %q
`, "file://"+filepath.Join(dir, "checkpoints"))
	var sub struct {
		JobID string `json:"job_id"`
	}
	restDo(t, "POST", base+"/jobs", spec, http.StatusCreated, &sub)
	if sub.JobID == "" {
		t.Fatal("submit returned no job_id")
	}
	id := sub.JobID

	var ov struct {
		Jobs struct {
			Total    int            `json:"total"`
			ByStatus map[string]int `json:"by_status"`
		} `json:"jobs"`
		TaskManagers struct {
			Total int `json:"total"`
		} `json:"taskmanagers"`
		Slots struct {
			Total, Free int
		} `json:"slots"`
	}
	waitFor(t, 20*time.Second, "the job RUNNING in the overview", func() bool {
		restDo(t, "GET", base+"/overview", "", http.StatusOK, &ov)
		return ov.Jobs.ByStatus["RUNNING"] == 1
	})
	if ov.TaskManagers.Total != 1 || ov.Slots.Total != 4 || ov.Slots.Free != 2 {
		t.Errorf("overview = %+v, want 1 TaskManager with 4 slots, 2 free", ov)
	}

	var job struct {
		Summary struct {
			JobID, Name, Status string
			SubmitTime          string `json:"submit_time"`
		} `json:"summary"`
		Tasks []struct {
			ID          string `json:"id"`
			Parallelism int    `json:"parallelism"`
		} `json:"tasks"`
		Graph struct {
			Vertices []struct {
				ID     string         `json:"id"`
				Config map[string]any `json:"config"`
			} `json:"vertices"`
		} `json:"graph"`
	}
	restDo(t, "GET", base+"/jobs/"+id, "", http.StatusOK, &job)
	if job.Summary.Name != "rest-count" || job.Summary.Status != "RUNNING" || len(job.Tasks) != 2 {
		t.Errorf("job = %+v", job)
	}
	if _, err := time.Parse(time.RFC3339Nano, job.Summary.SubmitTime); err != nil {
		t.Errorf("submit_time %q is not RFC 3339: %v", job.Summary.SubmitTime, err)
	}
	if len(job.Graph.Vertices) == 0 || job.Graph.Vertices[0].Config["rate"] != 1000.0 {
		t.Errorf("vertex config is not an object with the spec's values: %+v", job.Graph.Vertices)
	}

	var cks struct {
		Counts            map[string]int `json:"counts"`
		DurationMsP99     int64          `json:"duration_ms_p99"`
		LatestCompletedID int64          `json:"latest_completed_id"`
		Checkpoints       []struct {
			ID     int64  `json:"id"`
			Status string `json:"status"`
		} `json:"checkpoints"`
	}
	waitFor(t, 30*time.Second, "a completed checkpoint", func() bool {
		restDo(t, "GET", base+"/jobs/"+id+"/checkpoints", "", http.StatusOK, &cks)
		return cks.LatestCompletedID > 0
	})
	var ck struct {
		ID     int64  `json:"id"`
		Status string `json:"status"`
		Tasks  []struct {
			Task        string `json:"task"`
			Subtask     int    `json:"subtask"`
			AckTime     string `json:"ack_time"`
			AlignmentMs int64  `json:"alignment_ms"`
		} `json:"tasks"`
	}
	restDo(t, "GET", fmt.Sprintf("%s/jobs/%s/checkpoints/%d", base, id, cks.LatestCompletedID), "", http.StatusOK, &ck)
	seen := map[string]bool{}
	for _, st := range ck.Tasks {
		seen[fmt.Sprintf("%s/%d", st.Task, st.Subtask)] = true
		if _, err := time.Parse(time.RFC3339Nano, st.AckTime); err != nil {
			t.Errorf("subtask %s/%d ack_time %q: %v", st.Task, st.Subtask, st.AckTime, err)
		}
	}
	if ck.Status != "COMPLETED" || len(seen) != 4 {
		t.Errorf("checkpoint %d: status %s, subtasks %v; want COMPLETED with all 4 subtasks", ck.ID, ck.Status, seen)
	}

	// Backpressure and watermarks from the TaskManager's heartbeat samples:
	// a throttled source is mostly idle (level OK); the job has no event
	// time, so every watermark is "none" (null), never 1970.
	var bp struct {
		ID                  string  `json:"id"`
		Level               string  `json:"level"`
		SampledSubtasks     int     `json:"sampled_subtasks"`
		RecordsOutPerSecond float64 `json:"records_out_per_second"`
		Subtasks            []struct {
			Subtask            int     `json:"subtask"`
			Sampled            bool    `json:"sampled"`
			IdleRatio          float64 `json:"idle_ratio"`
			BackpressuredRatio float64 `json:"backpressured_ratio"`
			Level              string  `json:"level"`
		} `json:"subtasks"`
	}
	waitFor(t, 30*time.Second, "backpressure samples of both source subtasks", func() bool {
		restDo(t, "GET", base+"/jobs/"+id+"/vertices/src/backpressure", "", http.StatusOK, &bp)
		return bp.SampledSubtasks == 2 && bp.RecordsOutPerSecond > 0
	})
	if bp.ID != "src" || bp.Level != "OK" || len(bp.Subtasks) != 2 || bp.Subtasks[0].Level != "OK" || bp.Subtasks[1].IdleRatio < 0.5 {
		t.Errorf("throttled source's backpressure = %+v, want level OK, 2 mostly idle subtasks", bp)
	}
	if bp.RecordsOutPerSecond < 300 || bp.RecordsOutPerSecond > 3000 {
		t.Errorf("source records/s out = %.0f, want about the spec's rate 1000", bp.RecordsOutPerSecond)
	}
	var wms struct {
		Vertices []struct {
			ID       string  `json:"id"`
			Time     *string `json:"watermark_time"`
			State    string  `json:"state"`
			Subtasks []struct {
				Time  *string `json:"watermark_time"`
				State string  `json:"state"`
			} `json:"subtasks"`
		} `json:"vertices"`
	}
	restDo(t, "GET", base+"/jobs/"+id+"/watermarks", "", http.StatusOK, &wms)
	if len(wms.Vertices) != 2 {
		t.Errorf("watermarks of %d vertices, want 2: %+v", len(wms.Vertices), wms)
	}
	for _, v := range wms.Vertices {
		if v.Time != nil || v.State != "none" || len(v.Subtasks) != 2 || v.Subtasks[0].Time != nil || v.Subtasks[0].State != "none" {
			t.Errorf("vertex %s without event time: watermark %v state %q subtasks %+v; want null and none", v.ID, v.Time, v.State, v.Subtasks)
		}
	}
	var notFound struct {
		Error string `json:"error"`
	}
	restDo(t, "GET", base+"/jobs/"+id+"/vertices/nope/backpressure", "", http.StatusNotFound, &notFound)
	if !strings.Contains(notFound.Error, `"nope"`) || !strings.Contains(notFound.Error, "src") || strings.Contains(notFound.Error, "\n") {
		t.Errorf("unknown vertex: error %q does not name it and the vertices", notFound.Error)
	}
	restDo(t, "GET", base+"/jobs/nope/watermarks", "", http.StatusNotFound, &notFound)
	restDo(t, "GET", base+"/jobs/nope/vertices/src/backpressure", "", http.StatusNotFound, &notFound)

	// A savepoint, then a stop with a savepoint.
	savepoint := func(path string) string {
		var tr struct {
			TriggerID string `json:"trigger_id"`
		}
		restDo(t, "POST", base+"/jobs/"+id+path, fmt.Sprintf(`{"target_dir": %q}`, "file://"+filepath.Join(dir, "sp")), http.StatusAccepted, &tr)
		var st struct {
			Status   string `json:"status"`
			Failure  string `json:"failure"`
			Progress struct {
				Path string `json:"path"`
			} `json:"progress"`
		}
		waitFor(t, 30*time.Second, "savepoint "+tr.TriggerID, func() bool {
			restDo(t, "GET", base+"/jobs/"+id+"/savepoints/"+tr.TriggerID, "", http.StatusOK, &st)
			if st.Status == "FAILED" {
				t.Fatalf("savepoint failed: %s", st.Failure)
			}
			return st.Status == "COMPLETED"
		})
		if !strings.HasPrefix(st.Progress.Path, "file://"+filepath.Join(dir, "sp")) {
			t.Errorf("savepoint path %q", st.Progress.Path)
		}
		return st.Progress.Path
	}
	first := savepoint("/savepoints")
	if second := savepoint("/stop"); second == first {
		t.Errorf("the stop's savepoint is the first one: %s", second)
	}
	waitFor(t, 20*time.Second, "the job FINISHED after the stop", func() bool {
		restDo(t, "GET", base+"/jobs/"+id, "", http.StatusOK, &job)
		return job.Summary.Status == "FINISHED"
	})

	// Errors: JSON bodies with the status of their meaning.
	var e struct {
		Error string `json:"error"`
	}
	restDo(t, "GET", base+"/jobs/nope", "", http.StatusNotFound, &e)
	if !strings.Contains(e.Error, "nope") {
		t.Errorf("unknown job: error %q does not name it", e.Error)
	}
	var bad struct {
		Error    string `json:"error"`
		Problems any    `json:"problems"`
	}
	restDo(t, "POST", base+"/jobs", "name: x\noperators:\n  - id: a\n    type: no-such-type\n", http.StatusBadRequest, &bad)
	if b, _ := json.Marshal(bad.Problems); !strings.Contains(string(b), "no-such-type") {
		t.Errorf("invalid spec: problems %s do not name the unknown type", b)
	}
	restDo(t, "GET", base+"/jobs/"+id+"/checkpoints/x", "", http.StatusBadRequest, &e)
	restDo(t, "GET", base+"/no-such-endpoint", "", http.StatusNotFound, &e)
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	restDo(t, "GET", base+"/openapi.json", "", http.StatusOK, &doc)
	if doc.OpenAPI == "" || doc.Paths["/api/v1/jobs/{id}/checkpoints/{checkpointId}"] == nil {
		t.Errorf("openapi.json lacks the checkpoint endpoint: %v", doc.Paths)
	}

	// Cancel a second job.
	restDo(t, "POST", base+"/jobs", spec, http.StatusCreated, &sub)
	restDo(t, "POST", base+"/jobs/"+sub.JobID+"/cancel", "", http.StatusOK, nil)
	waitFor(t, 20*time.Second, "the second job CANCELED", func() bool {
		restDo(t, "GET", base+"/jobs/"+sub.JobID, "", http.StatusOK, &job)
		return job.Summary.Status == "CANCELED"
	})
}

// restDo sends a request, checks the status and decodes the JSON answer
// into out (when not nil).
func restDo(t *testing.T, method, url, body string, want int, out any) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, url, resp.StatusCode, want, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q", method, url, ct)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v\n%s", method, url, err, b)
		}
	}
}
