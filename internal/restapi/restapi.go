// Package restapi is the JobManager's REST API, served under /api/v1 on its
// HTTP address. Each endpoint calls the JobManager's gRPC API (the one
// flowctl uses) and renders the answer with internal/apijson, so the REST
// API, flowctl -o json and the .proto are one set of types. The read
// endpoints are answered from the job masters' published views: polling
// never blocks a job.
//
//	GET  /api/v1/overview                               jobs by status, TaskManagers, slots
//	GET  /api/v1/taskmanagers                           ListTaskManagersResponse
//	GET  /api/v1/jobs                                   ListJobsResponse
//	POST /api/v1/jobs                                   submit a YAML spec (the body) -> {"job_id"}
//	GET  /api/v1/jobs/{id}                              JobDetails
//	GET  /api/v1/jobs/{id}/checkpoints                  history, counts, duration percentiles
//	GET  /api/v1/jobs/{id}/checkpoints/{checkpointId}   CheckpointInfo with per-subtask timings
//	GET  /api/v1/jobs/{id}/vertices                     GetVertexStatsResponse: per vertex and subtask
//	GET  /api/v1/jobs/{id}/vertices/{vertex}/backpressure  VertexStats: ratios per subtask, maxima, level
//	GET  /api/v1/jobs/{id}/watermarks                   the watermark per vertex and subtask
//	POST /api/v1/jobs/{id}/savepoints                   202 {"trigger_id"}; body {"target_dir", "stop", "drain"} (optional)
//	GET  /api/v1/jobs/{id}/savepoints/{triggerId}       the savepoint's progress
//	POST /api/v1/jobs/{id}/stop                         stop with a savepoint: 202 {"trigger_id"}
//	POST /api/v1/jobs/{id}/cancel                       cancel
//	GET  /api/v1/openapi.json                           the OpenAPI document (docs/reference/openapi.json)
//
// Errors are JSON {"error": "..."} with the HTTP status of the gRPC code.
package restapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/flowrt/flow/internal/apijson"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// maxSpec bounds a submitted spec's size.
const maxSpec = 4 << 20

// maxTriggers bounds the savepoint triggers remembered; the oldest finished
// ones are forgotten first.
const maxTriggers = 256

// API serves the REST endpoints. Close ends the savepoints it follows.
type API struct {
	c      clusterv1.JobManagerServiceClient
	mux    *http.ServeMux
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	triggers map[string]*trigger
	order    []string
	next     int
}

type trigger struct {
	job  string
	last *clusterv1.SavepointProgress
	err  string
	done bool
}

// New returns the API over c.
func New(c clusterv1.JobManagerServiceClient) *API {
	ctx, cancel := context.WithCancel(context.Background())
	a := &API{c: c, mux: http.NewServeMux(), ctx: ctx, cancel: cancel, triggers: map[string]*trigger{}}
	a.mux.HandleFunc("GET /api/v1/overview", a.overview)
	a.mux.HandleFunc("GET /api/v1/taskmanagers", a.taskManagers)
	a.mux.HandleFunc("GET /api/v1/jobs", a.jobs)
	a.mux.HandleFunc("POST /api/v1/jobs", a.submit)
	a.mux.HandleFunc("GET /api/v1/jobs/{id}", a.job)
	a.mux.HandleFunc("GET /api/v1/jobs/{id}/checkpoints", a.checkpoints)
	a.mux.HandleFunc("GET /api/v1/jobs/{id}/checkpoints/{cid}", a.checkpoint)
	a.mux.HandleFunc("GET /api/v1/jobs/{id}/vertices", a.vertices)
	a.mux.HandleFunc("GET /api/v1/jobs/{id}/vertices/{vertex}/backpressure", a.backpressure)
	a.mux.HandleFunc("GET /api/v1/jobs/{id}/watermarks", a.watermarks)
	a.mux.HandleFunc("POST /api/v1/jobs/{id}/savepoints", a.savepoint(false))
	a.mux.HandleFunc("POST /api/v1/jobs/{id}/stop", a.savepoint(true))
	a.mux.HandleFunc("GET /api/v1/jobs/{id}/savepoints/{tid}", a.savepointStatus)
	a.mux.HandleFunc("POST /api/v1/jobs/{id}/cancel", a.cancelJob)
	a.mux.HandleFunc("GET /api/v1/openapi.json", a.openapi)
	a.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no endpoint %s %s: see docs/observability.md for the REST API", r.Method, r.URL.Path))
	})
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// Close stops following savepoints and waits for it.
func (a *API) Close() {
	a.cancel()
	a.wg.Wait()
}

const callTimeout = 10 * time.Second

func (a *API) call(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), callTimeout)
}

func (a *API) overview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.call(r)
	defer cancel()
	jobs, err := a.c.ListJobs(ctx, &clusterv1.ListJobsRequest{})
	if err != nil {
		writeRPCError(w, err)
		return
	}
	tms, err := a.c.ListTaskManagers(ctx, &clusterv1.ListTaskManagersRequest{})
	if err != nil {
		writeRPCError(w, err)
		return
	}
	byStatus := map[string]int{}
	for _, j := range jobs.GetJobs() {
		byStatus[enumValue(j.GetStatus())]++
	}
	byState := map[string]int{}
	slots, free := 0, 0
	for _, tm := range tms.GetTaskManagers() {
		byState[enumValue(tm.GetState())]++
		if tm.GetState() == clusterv1.TaskManagerState_TASK_MANAGER_STATE_ACTIVE {
			slots += int(tm.GetSlots())
			free += int(tm.GetFreeSlots())
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"jobs":         map[string]any{"total": len(jobs.GetJobs()), "by_status": byStatus},
		"taskmanagers": map[string]any{"total": len(tms.GetTaskManagers()), "by_state": byState},
		"slots":        map[string]any{"total": slots, "free": free},
	})
}

func (a *API) taskManagers(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.call(r)
	defer cancel()
	resp, err := a.c.ListTaskManagers(ctx, &clusterv1.ListTaskManagersRequest{})
	writeMessage(w, resp, err)
}

func (a *API) jobs(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.call(r)
	defer cancel()
	resp, err := a.c.ListJobs(ctx, &clusterv1.ListJobsRequest{})
	writeMessage(w, resp, err)
}

func (a *API) job(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.call(r)
	defer cancel()
	resp, err := a.c.GetJob(ctx, &clusterv1.GetJobRequest{JobId: r.PathValue("id")})
	writeMessage(w, resp.GetJob(), err)
}

func (a *API) submit(w http.ResponseWriter, r *http.Request) {
	spec, err := io.ReadAll(io.LimitReader(r.Body, maxSpec+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("read the spec: %w", err))
		return
	}
	if len(spec) > maxSpec {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("the spec is over %d bytes", maxSpec))
		return
	}
	ctx, cancel := a.call(r)
	defer cancel()
	v, err := a.c.ValidateSpec(ctx, &clusterv1.ValidateSpecRequest{Spec: spec})
	if err != nil {
		writeRPCError(w, err)
		return
	}
	if v.GetGraph() == nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "the spec is not valid", "problems": apijson.Value(v)})
		return
	}
	q := r.URL.Query()
	resp, err := a.c.SubmitJob(ctx, &clusterv1.SubmitJobRequest{Graph: v.GetGraph(),
		RestorePath: q.Get("restore_path"), AllowNonRestoredState: q.Get("allow_non_restored_state") == "true"})
	if err != nil {
		writeRPCError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, apijson.Value(resp))
}

func (a *API) cancelJob(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.call(r)
	defer cancel()
	resp, err := a.c.CancelJob(ctx, &clusterv1.CancelJobRequest{JobId: r.PathValue("id")})
	writeMessage(w, resp, err)
}

// checkpointSummary is the checkpoints endpoint's answer: the history with
// counts by status and duration percentiles of the completed ones.
type checkpointSummary struct {
	Counts              map[string]int `json:"counts"`
	DurationMsP50       int64          `json:"duration_ms_p50"`
	DurationMsP90       int64          `json:"duration_ms_p90"`
	DurationMsP99       int64          `json:"duration_ms_p99"`
	LatestCompletedID   int64          `json:"latest_completed_id"`
	LatestCompletedPath string         `json:"latest_completed_path"`
	Checkpoints         any            `json:"checkpoints"`
}

func (a *API) checkpoints(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.call(r)
	defer cancel()
	resp, err := a.c.ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: r.PathValue("id")})
	if err != nil {
		writeRPCError(w, err)
		return
	}
	s := checkpointSummary{Counts: map[string]int{}, LatestCompletedPath: resp.GetLatestCompletedPath()}
	var durations []int64
	for _, c := range resp.GetCheckpoints() {
		s.Counts[enumValue(c.GetStatus())]++
		switch c.GetStatus() {
		case clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED, clusterv1.CheckpointStatus_CHECKPOINT_STATUS_DISCARDED:
			durations = append(durations, c.GetDurationMs())
			if c.GetStatus() == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED && c.GetId() > s.LatestCompletedID {
				s.LatestCompletedID = c.GetId()
			}
		}
	}
	sort.Slice(durations, func(i, j int) bool { return durations[i] < durations[j] })
	s.DurationMsP50, s.DurationMsP90, s.DurationMsP99 = percentile(durations, 50), percentile(durations, 90), percentile(durations, 99)
	list := make([]any, 0, len(resp.GetCheckpoints()))
	for _, c := range resp.GetCheckpoints() {
		c = proto.Clone(c).(*clusterv1.CheckpointInfo)
		c.Tasks = nil // per checkpoint: /checkpoints/{id}
		list = append(list, apijson.Value(c))
	}
	s.Checkpoints = list
	writeJSON(w, http.StatusOK, s)
}

// percentile of sorted values by the nearest-rank method (0 when empty).
func percentile(sorted []int64, p int) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}

func (a *API) checkpoint(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("cid"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("checkpoint id %q is not a number", r.PathValue("cid")))
		return
	}
	ctx, cancel := a.call(r)
	defer cancel()
	resp, err := a.c.ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: r.PathValue("id")})
	if err != nil {
		writeRPCError(w, err)
		return
	}
	for _, c := range resp.GetCheckpoints() {
		if c.GetId() == id {
			writeJSON(w, http.StatusOK, apijson.Value(c))
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Errorf("job %s has no checkpoint %d in its history (the last 100 are kept)", r.PathValue("id"), id))
}

func (a *API) savepoint(stop bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			TargetDir string `json:"target_dir"`
			Stop      bool   `json:"stop"`
			Drain     bool   `json:"drain"`
		}
		if r.ContentLength != 0 {
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
				writeError(w, http.StatusBadRequest, fmt.Errorf("the body is not JSON {\"target_dir\", \"stop\", \"drain\"}: %w", err))
				return
			}
		}
		job := r.PathValue("id")
		req := &clusterv1.TriggerSavepointRequest{JobId: job, TargetDir: body.TargetDir, Stop: stop || body.Stop, Drain: body.Drain}
		stream, err := a.c.TriggerSavepoint(a.ctx, req)
		if err != nil {
			writeRPCError(w, err)
			return
		}
		// The first message says whether the savepoint started.
		first, err := stream.Recv()
		if err != nil {
			writeRPCError(w, err)
			return
		}
		id, t := a.addTrigger(job, first)
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			for {
				p, err := stream.Recv()
				a.mu.Lock()
				switch {
				case err == nil:
					t.last = p
					t.done = p.GetDone()
				case errors.Is(err, io.EOF):
					t.done = true
				default:
					t.err, t.done = status.Convert(err).Message(), true
				}
				done := t.done
				a.mu.Unlock()
				if done {
					return
				}
			}
		}()
		writeJSON(w, http.StatusAccepted, map[string]any{"trigger_id": id})
	}
}

func (a *API) addTrigger(job string, first *clusterv1.SavepointProgress) (string, *trigger) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.next++
	id := strconv.Itoa(a.next)
	t := &trigger{job: job, last: first, done: first.GetDone()}
	a.triggers[id] = t
	a.order = append(a.order, id)
	for len(a.order) > maxTriggers {
		old := a.order[0]
		if !a.triggers[old].done {
			break
		}
		delete(a.triggers, old)
		a.order = a.order[1:]
	}
	return id, t
}

func (a *API) savepointStatus(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	t, ok := a.triggers[r.PathValue("tid")]
	var out map[string]any
	if ok && t.job == r.PathValue("id") {
		status := "IN_PROGRESS"
		switch {
		case t.err != "":
			status = "FAILED"
		case t.done && t.last.GetDone():
			status = "COMPLETED"
		case t.done:
			status, t.err = "FAILED", "the savepoint stream ended without a result"
		}
		out = map[string]any{"status": status, "progress": apijson.Value(t.last), "failure": t.err}
	}
	a.mu.Unlock()
	if out == nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("no savepoint trigger %s for job %s (this JobManager remembers the last %d)", r.PathValue("tid"), r.PathValue("id"), maxTriggers))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// enumValue is an enum's plain value (RUNNING), as apijson renders it.
func enumValue(e protoreflect.Enum) string { return apijson.Enum(e) }

func writeMessage(w http.ResponseWriter, m proto.Message, err error) {
	if err != nil {
		writeRPCError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, apijson.Value(m))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, err error) {
	b, _ := json.Marshal(map[string]string{"error": err.Error()})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeRPCError(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	writeError(w, httpStatus(st.Code()), errors.New(st.Message()))
}

// httpStatus maps a gRPC code to the HTTP status of the same meaning.
func httpStatus(c codes.Code) int {
	switch c {
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.FailedPrecondition:
		return http.StatusPreconditionFailed
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Unimplemented:
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}
