package restapi

import (
	"encoding/json"
	"net/http"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/flowrt/flow/internal/apijson"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// OpenAPI returns the API's OpenAPI 3 document. The schemas are generated
// from the .proto descriptors by apijson's rules (docs/reference/openapi.json
// is this output, checked by a test).
func OpenAPI() ([]byte, error) {
	ref := func(name string) map[string]any {
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	ok := func(desc string, schema map[string]any) map[string]any {
		return map[string]any{"description": desc, "content": map[string]any{"application/json": map[string]any{"schema": schema}}}
	}
	errResp := ok("An error: one line naming the thing and the fix.", ref("Error"))
	op := func(summary string, code string, resp map[string]any, params ...string) map[string]any {
		o := map[string]any{"summary": summary, "responses": map[string]any{code: resp, "default": errResp}}
		var ps []any
		for _, p := range params {
			ps = append(ps, map[string]any{"name": p, "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		if len(ps) > 0 {
			o["parameters"] = ps
		}
		return o
	}
	trigger := ok("The savepoint started; poll its trigger id.", map[string]any{"type": "object",
		"properties": map[string]any{"trigger_id": map[string]any{"type": "string"}}})
	savepointBody := map[string]any{"required": false, "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{
		"type": "object", "properties": map[string]any{
			"target_dir": map[string]any{"type": "string", "description": "Directory URL; empty: the JobManager's --savepoint-dir."},
			"stop":       map[string]any{"type": "boolean"}, "drain": map[string]any{"type": "boolean"}}}}}}
	withBody := func(o map[string]any, body map[string]any) map[string]any { o["requestBody"] = body; return o }

	schemas := apijson.Schemas(descriptors(&clusterv1.ListJobsResponse{}, &clusterv1.JobDetails{}, &clusterv1.ListTaskManagersResponse{},
		&clusterv1.CheckpointInfo{}, &clusterv1.SubmitJobResponse{}, &clusterv1.CancelJobResponse{}, &clusterv1.SavepointProgress{},
		&clusterv1.ValidateSpecResponse{}, &clusterv1.GetVertexStatsResponse{})...)
	schemas["Error"] = map[string]any{"type": "object", "properties": map[string]any{"error": map[string]any{"type": "string"}}}
	schemas["Overview"] = map[string]any{"type": "object", "properties": map[string]any{
		"jobs":         map[string]any{"type": "object", "properties": map[string]any{"total": map[string]any{"type": "integer"}, "by_status": map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "integer"}}}},
		"taskmanagers": map[string]any{"type": "object", "properties": map[string]any{"total": map[string]any{"type": "integer"}, "by_state": map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "integer"}}}},
		"slots":        map[string]any{"type": "object", "properties": map[string]any{"total": map[string]any{"type": "integer"}, "free": map[string]any{"type": "integer"}}}}}
	schemas["CheckpointSummary"] = map[string]any{"type": "object", "properties": map[string]any{
		"counts":                map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "integer"}},
		"duration_ms_p50":       map[string]any{"type": "integer"},
		"duration_ms_p90":       map[string]any{"type": "integer"},
		"duration_ms_p99":       map[string]any{"type": "integer"},
		"latest_completed_id":   map[string]any{"type": "integer"},
		"latest_completed_path": map[string]any{"type": "string"},
		"checkpoints":           map[string]any{"type": "array", "items": ref("CheckpointInfo"), "description": "Newest first, without per-subtask timings (see /checkpoints/{checkpointId})."}}}
	wm := func(extra map[string]any) map[string]any {
		p := map[string]any{
			"watermark_time": map[string]any{"type": "string", "format": "date-time", "nullable": true, "description": "Null unless state is ok."},
			"state":          map[string]any{"type": "string", "enum": []string{"ok", "none", "end_of_stream"}, "description": "none: no watermark yet (no event time, or not sampled yet); end_of_stream: the inputs ended."}}
		for k, v := range extra {
			p[k] = v
		}
		return map[string]any{"type": "object", "properties": p}
	}
	schemas["Watermarks"] = map[string]any{"type": "object", "properties": map[string]any{
		"job_id": map[string]any{"type": "string"}, "attempt": map[string]any{"type": "integer"},
		"vertices": map[string]any{"type": "array", "items": wm(map[string]any{
			"id":       map[string]any{"type": "string", "description": "Task vertex id; its watermark is the minimum over its subtasks."},
			"subtasks": map[string]any{"type": "array", "items": wm(map[string]any{"subtask": map[string]any{"type": "integer"}})}})}}}
	schemas["SavepointStatus"] = map[string]any{"type": "object", "properties": map[string]any{
		"status":   map[string]any{"type": "string", "enum": []string{"IN_PROGRESS", "COMPLETED", "FAILED"}},
		"progress": ref("SavepointProgress"), "failure": map[string]any{"type": "string"}}}

	doc := map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{"title": "Flow JobManager REST API", "version": "v1",
			"description": "Served under /api/v1 on the JobManager's HTTP address. The messages are the gRPC API's (proto/flow/cluster/v1), rendered as flowctl -o json renders them."},
		"paths": map[string]any{
			"/api/v1/overview":     map[string]any{"get": op("Jobs by status, TaskManagers by state, slots", "200", ok("The overview.", ref("Overview")))},
			"/api/v1/taskmanagers": map[string]any{"get": op("TaskManagers", "200", ok("The TaskManagers.", ref("ListTaskManagersResponse")))},
			"/api/v1/jobs": map[string]any{
				"get": op("Jobs", "200", ok("The jobs.", ref("ListJobsResponse"))),
				"post": withBody(op("Submit a YAML job spec (the body); query restore_path and allow_non_restored_state as flowctl run's flags", "201", ok("The job id.", ref("SubmitJobResponse"))),
					map[string]any{"required": true, "content": map[string]any{"application/yaml": map[string]any{"schema": map[string]any{"type": "string"}}}}),
			},
			"/api/v1/jobs/{id}":                                map[string]any{"get": op("A job: summary, graph, tasks with subtasks, history", "200", ok("The job.", ref("JobDetails")), "id")},
			"/api/v1/jobs/{id}/checkpoints":                    map[string]any{"get": op("A job's checkpoint history with counts and duration percentiles", "200", ok("The history.", ref("CheckpointSummary")), "id")},
			"/api/v1/jobs/{id}/checkpoints/{checkpointId}":     map[string]any{"get": op("One checkpoint with each subtask's ack time, alignment, sync and async upload", "200", ok("The checkpoint.", ref("CheckpointInfo")), "id", "checkpointId")},
			"/api/v1/jobs/{id}/vertices":                       map[string]any{"get": op("Per task vertex and subtask: busy/idle/backpressured ratios, backpressure level, records/s, watermark (from heartbeat samples)", "200", ok("The vertices.", ref("GetVertexStatsResponse")), "id")},
			"/api/v1/jobs/{id}/vertices/{vertex}/backpressure": map[string]any{"get": op("A task vertex's backpressure: ratios per subtask, their maxima and the level (OK up to 0.10 backpressured, LOW up to 0.50, HIGH above)", "200", ok("The vertex.", ref("VertexStats")), "id", "vertex")},
			"/api/v1/jobs/{id}/watermarks":                     map[string]any{"get": op("The watermark of every task vertex and subtask", "200", ok("The watermarks.", ref("Watermarks")), "id")},
			"/api/v1/jobs/{id}/savepoints":                     map[string]any{"post": withBody(op("Trigger a savepoint", "202", trigger, "id"), savepointBody)},
			"/api/v1/jobs/{id}/savepoints/{triggerId}":         map[string]any{"get": op("A savepoint's progress", "200", ok("The progress.", ref("SavepointStatus")), "id", "triggerId")},
			"/api/v1/jobs/{id}/stop":                           map[string]any{"post": withBody(op("Stop the job with a savepoint", "202", trigger, "id"), savepointBody)},
			"/api/v1/jobs/{id}/cancel":                         map[string]any{"post": op("Cancel the job", "200", ok("Canceling.", ref("CancelJobResponse")), "id")},
			"/api/v1/openapi.json":                             map[string]any{"get": op("This document", "200", map[string]any{"description": "OpenAPI 3."})},
		},
		"components": map[string]any{"schemas": schemas},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func descriptors(ms ...interface{ ProtoReflect() protoreflect.Message }) []protoreflect.MessageDescriptor {
	out := make([]protoreflect.MessageDescriptor, len(ms))
	for i, m := range ms {
		out[i] = m.ProtoReflect().Descriptor()
	}
	return out
}

func (a *API) openapi(w http.ResponseWriter, _ *http.Request) {
	b, err := OpenAPI()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
