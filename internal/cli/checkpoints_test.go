package cli

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// checkpoints --tasks numbers subtasks from 0, as describe and the JSON
// output do.
func TestCheckpointsTasksNumberSubtasksFromZero(t *testing.T) {
	c := startCluster(t)
	env := map[string]string{EnvJobManager: c.JobManagerAddress()}
	spec := writeSpec(t, savepointJob+"checkpoints:\n  interval: 100ms\n")
	r := flowctl(t, env, "run", spec, "--detach")
	if r.code != 0 {
		t.Fatalf("run: exit %d: %s", r.code, r.stderr)
	}
	id := strings.TrimSuffix(r.stdout, "\n")
	defer flowctl(t, env, "cancel", id)

	var listed struct {
		Checkpoints []struct {
			Status string `json:"status"`
			Tasks  []struct {
				Task    string `json:"task"`
				Subtask int    `json:"subtask"`
			} `json:"tasks"`
		} `json:"checkpoints"`
	}
	waitFor(t, func() bool {
		r := flowctl(t, env, "checkpoints", id, "-o", "json")
		if r.code != 0 {
			t.Fatalf("checkpoints -o json: exit %d: %s", r.code, r.stderr)
		}
		if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil {
			t.Fatal(err)
		}
		for _, cp := range listed.Checkpoints {
			if cp.Status == "COMPLETED" && len(cp.Tasks) > 0 {
				return true
			}
		}
		return false
	}, "a completed checkpoint with subtask timings")
	jsonSubtasks := map[string]bool{}
	for _, cp := range listed.Checkpoints {
		for _, st := range cp.Tasks {
			jsonSubtasks[st.Task+"/"+strconv.Itoa(st.Subtask)] = true
		}
	}
	if !jsonSubtasks["count/0"] || !jsonSubtasks["count/1"] || jsonSubtasks["count/2"] {
		t.Fatalf("JSON subtasks %v, want count/0 and count/1 (parallelism 2)", jsonSubtasks)
	}

	r = flowctl(t, env, "checkpoints", id, "--tasks")
	if r.code != 0 {
		t.Fatalf("checkpoints --tasks: exit %d: %s", r.code, r.stderr)
	}
	rows := regexp.MustCompile(`(?m)^-\s+(gen|count|sink)/(\d+)\s`).FindAllStringSubmatch(r.stdout, -1)
	if len(rows) == 0 {
		t.Fatalf("checkpoints --tasks printed no subtask rows:\n%s", r.stdout)
	}
	printed := map[string]bool{}
	for _, m := range rows {
		printed[m[1]+"/"+m[2]] = true
	}
	if !printed["count/0"] || printed["count/2"] || printed["gen/1"] {
		t.Fatalf("checkpoints --tasks printed subtasks %v, want them numbered from 0 (count/0, count/1, gen/0):\n%s", printed, r.stdout)
	}
}
