package restapi

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/flowrt/flow/internal/apijson"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// The per-vertex endpoints answer from the JobManager's heartbeat sample
// read model (GetVertexStats).

func (a *API) vertexStats(w http.ResponseWriter, r *http.Request) (*clusterv1.GetVertexStatsResponse, bool) {
	ctx, cancel := a.call(r)
	defer cancel()
	resp, err := a.c.GetVertexStats(ctx, &clusterv1.GetVertexStatsRequest{JobId: r.PathValue("id")})
	if err != nil {
		writeRPCError(w, err)
		return nil, false
	}
	return resp, true
}

func (a *API) vertices(w http.ResponseWriter, r *http.Request) {
	if resp, ok := a.vertexStats(w, r); ok {
		writeJSON(w, http.StatusOK, apijson.Value(resp))
	}
}

func (a *API) backpressure(w http.ResponseWriter, r *http.Request) {
	resp, ok := a.vertexStats(w, r)
	if !ok {
		return
	}
	name := r.PathValue("vertex")
	ids := make([]string, 0, len(resp.GetVertices()))
	for _, v := range resp.GetVertices() {
		if v.GetId() == name {
			writeJSON(w, http.StatusOK, apijson.Value(v))
			return
		}
		ids = append(ids, v.GetId())
	}
	writeError(w, http.StatusNotFound, fmt.Errorf("job %s has no task vertex %q: its vertices are %s", r.PathValue("id"), name, strings.Join(ids, ", ")))
}

// watermark is a watermark as the watermarks endpoint shows it: an RFC 3339
// time, or null with a state saying why.
type watermark struct {
	Subtask *int32  `json:"subtask,omitempty"`
	ID      string  `json:"id,omitempty"`
	Time    *string `json:"watermark_time"`
	// State: "ok" (a time), "none" (no watermark yet: no event time, or a
	// subtask not sampled yet) or "end_of_stream" (inputs ended).
	State    string      `json:"state"`
	Subtasks []watermark `json:"subtasks,omitempty"`
}

func watermarkOf(ms int64, end bool) watermark {
	switch {
	case end:
		return watermark{State: "end_of_stream"}
	case ms == 0:
		return watermark{State: "none"}
	}
	t := time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
	return watermark{Time: &t, State: "ok"}
}

func (a *API) watermarks(w http.ResponseWriter, r *http.Request) {
	resp, ok := a.vertexStats(w, r)
	if !ok {
		return
	}
	out := make([]watermark, 0, len(resp.GetVertices()))
	for _, v := range resp.GetVertices() {
		vw := watermarkOf(v.GetWatermarkTimeMs(), v.GetWatermarkEndOfStream())
		vw.ID = v.GetId()
		vw.Subtasks = []watermark{}
		for _, s := range v.GetSubtasks() {
			sw := watermarkOf(s.GetWatermarkTimeMs(), s.GetWatermarkEndOfStream())
			i := s.GetSubtask()
			sw.Subtask = &i
			vw.Subtasks = append(vw.Subtasks, sw)
		}
		out = append(out, vw)
	}
	writeJSON(w, http.StatusOK, map[string]any{"job_id": resp.GetJobId(), "attempt": resp.GetAttempt(), "vertices": out})
}
