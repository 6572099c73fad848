package apijson

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

func TestMachineJSON(t *testing.T) {
	submit := time.Date(2026, 12, 3, 14, 5, 6, 789e6, time.UTC)
	d := &clusterv1.JobDetails{
		Summary: &clusterv1.JobSummary{JobId: "j1", Name: "orders", Status: clusterv1.JobStatus_JOB_STATUS_RUNNING,
			SubmitTimeMs: submit.UnixMilli(), Attempt: 2},
		Graph: &jobgraphv1.JobGraph{Name: "orders", Vertices: []*jobgraphv1.Vertex{
			{Id: "src", Type: "datagen", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SOURCE, Parallelism: 2, Config: []byte(`{"count":10}`)}}},
		History: []*clusterv1.StatusChange{{Status: clusterv1.JobStatus_JOB_STATUS_CREATED, TimeMs: submit.UnixMilli(), Message: "submitted"}},
	}
	b, err := Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Summary map[string]any `json:"summary"`
		Graph   struct {
			Vertices []map[string]any `json:"vertices"`
		} `json:"graph"`
		History []map[string]any `json:"history"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	s := got.Summary
	if s["status"] != "RUNNING" {
		t.Errorf("status = %v, want the plain enum value RUNNING", s["status"])
	}
	if s["attempt"] != 2.0 {
		t.Errorf("attempt = %#v, want the number 2", s["attempt"])
	}
	if s["submit_time"] != "2026-12-03T14:05:06.789Z" {
		t.Errorf("submit_time = %v, want RFC 3339", s["submit_time"])
	}
	if _, ok := s["submit_time_ms"]; ok {
		t.Error("submit_time_ms is rendered besides submit_time")
	}
	if v, ok := s["end_time"]; !ok || v != nil {
		t.Errorf("end_time = %v (present %v), want null: the job has not ended", v, ok)
	}
	v := got.Graph.Vertices[0]
	if cfg, ok := v["config"].(map[string]any); !ok || cfg["count"] != 10.0 {
		t.Errorf("config = %#v, want the JSON object", v["config"])
	}
	if v["kind"] != "SOURCE" {
		t.Errorf("kind = %v, want SOURCE", v["kind"])
	}
	if got.History[0]["time"] != "2026-12-03T14:05:06.789Z" || got.History[0]["status"] != "CREATED" {
		t.Errorf("history = %v", got.History[0])
	}
	// Field order follows the proto.
	if i, j := strings.Index(string(b), `"job_id"`), strings.Index(string(b), `"name"`); i < 0 || j < i {
		t.Errorf("fields out of proto order:\n%s", b)
	}
}

func TestYAMLHasTheSameValues(t *testing.T) {
	m := &clusterv1.JobSummary{JobId: "j1", Status: clusterv1.JobStatus_JOB_STATUS_FAILED, Failure: "boom"}
	b, err := MarshalYAML(m)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if got["status"] != "FAILED" || got["failure"] != "boom" || got["attempt"] != 0 {
		t.Errorf("yaml = %v\n%s", got, b)
	}
	if strings.Contains(string(b), "{") {
		t.Errorf("flow style in YAML output:\n%s", b)
	}
}

func TestBytesThatAreNotJSON(t *testing.T) {
	text := Value(&clusterv1.SubmitJobRequest{Graph: &jobgraphv1.JobGraph{Name: "x"}})
	if _, err := json.Marshal(text); err != nil {
		t.Fatal(err)
	}
	v := scalarBytes(t, []byte("name: x\nparallelism: 2\n"))
	if v != "name: x\nparallelism: 2\n" {
		t.Errorf("YAML text bytes = %#v, want the text", v)
	}
	if v := scalarBytes(t, []byte{0, 1, 2}); v != "AAEC" {
		t.Errorf("binary bytes = %#v, want base64", v)
	}
}

func scalarBytes(t *testing.T, b []byte) any {
	t.Helper()
	m := (&clusterv1.ValidateSpecRequest{Spec: b}).ProtoReflect()
	fd := m.Descriptor().Fields().ByName("spec")
	return scalar(fd, m.Get(fd), true)
}

func TestEnumPrefix(t *testing.T) {
	ed := clusterv1.TaskManagerState(0).Descriptor()
	if got := EnumPrefix(ed); got != "TASK_MANAGER_STATE_" {
		t.Errorf("EnumPrefix(TaskManagerState) = %q", got)
	}
}
