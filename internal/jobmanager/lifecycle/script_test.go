package lifecycle

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/internal/jobmanager/restart"
	"github.com/flowrt/flow/internal/scripttest"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/*.txt with the actual output (review the diff before committing)")

// TestScripts runs the scenarios in testdata/*.txt: blocks of
//
//	<command> key=value ...
//	----
//	<emitted actions, one a line; "ok" when none>
//
// Commands: init tasks=src:2,sink:1 [restart=none|fixed:ATTEMPTS:DELAYMS]
// [slot-timeout=MS] [t=MS] [status=RUNNING attempt=N] (a stored job);
// slots s=tm-a,tm-b; no-slots reason=...; task name=src/0 state=RUNNING
// [tm=] [attempt=] [failure=...] [unreadable=ID]; tm-lost tm= reason=;
// deploy-unreachable [attempt=]; cancel; fail reason=; stopping path=;
// stop path= [attempt=]; tick; restore-chosen [attempt=] [reason=] [retry];
// jobmanager-restarted; state. Every event takes t=MS (milliseconds since
// the Unix epoch); an omitted attempt is the current one; an omitted tm is
// the one the subtask was deployed to. Underscores in values stand for
// spaces.
func TestScripts(t *testing.T) {
	scripttest.RunDir(t, "testdata", *rewrite, func(t *testing.T) func(string, map[string]string) (string, error) {
		var m *Machine
		return func(cmd string, args map[string]string) (string, error) {
			return runCommand(&m, cmd, args)
		}
	})
}

func text(args map[string]string, key string) string { return strings.ReplaceAll(args[key], "_", " ") }

func runCommand(mp **Machine, cmd string, args map[string]string) (string, error) {
	at := time.UnixMilli(0)
	if v, ok := args["t"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return "", err
		}
		at = time.UnixMilli(n)
	}
	if cmd == "init" {
		d := &clusterv1.JobDetails{Summary: &clusterv1.JobSummary{JobId: "job", Status: clusterv1.JobStatus_JOB_STATUS_CREATED, Attempt: 1}}
		for _, spec := range strings.Split(args["tasks"], ",") {
			name, n, _ := strings.Cut(spec, ":")
			p, err := strconv.Atoi(n)
			if err != nil {
				return "", fmt.Errorf("tasks: %q: want name:parallelism", spec)
			}
			ti := &clusterv1.TaskVertexInfo{Id: name, Parallelism: int32(p)}
			for i := 0; i < p; i++ {
				ti.Subtasks = append(ti.Subtasks, &clusterv1.SubtaskInfo{Index: int32(i)})
			}
			d.Tasks = append(d.Tasks, ti)
		}
		if s := args["status"]; s != "" {
			d.Summary.Status = clusterv1.JobStatus(clusterv1.JobStatus_value["JOB_STATUS_"+s])
		}
		if a := args["attempt"]; a != "" {
			n, err := strconv.Atoi(a)
			if err != nil {
				return "", err
			}
			d.Summary.Attempt = int32(n)
		}
		rc := &jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_NONE}
		if r := args["restart"]; strings.HasPrefix(r, "fixed:") {
			parts := strings.Split(r, ":")
			n, err1 := strconv.Atoi(parts[1])
			delay, err2 := strconv.Atoi(parts[2])
			if err := errors.Join(err1, err2); err != nil {
				return "", err
			}
			rc = &jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_FIXED_DELAY, Attempts: proto.Int32(int32(n)),
				Delay: durationpb.New(time.Duration(delay) * time.Millisecond)}
		}
		slotTimeout := time.Minute
		if v := args["slot-timeout"]; v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return "", err
			}
			slotTimeout = time.Duration(n) * time.Millisecond
		}
		*mp = New(d, restart.For(rc, func() float64 { return 0 }), slotTimeout, at)
		return "ok", nil
	}
	m := *mp
	if m == nil {
		return "", fmt.Errorf("%s before init", cmd)
	}
	if cmd == "state" {
		return describe(m), nil
	}
	ev := Event{Time: at, Attempt: m.Attempt(), Reason: text(args, "reason"), Path: args["path"], Failure: text(args, "failure")}
	if a := args["attempt"]; a != "" {
		n, err := strconv.Atoi(a)
		if err != nil {
			return "", err
		}
		ev.Attempt = int32(n)
	}
	switch cmd {
	case "slots":
		ev.Type, ev.Slots = EventSlots, strings.Split(args["s"], ",")
	case "no-slots":
		ev.Type = EventNoSlots
	case "task":
		ev.Type = EventTaskState
		task, idx, _ := strings.Cut(args["name"], "/")
		n, err := strconv.Atoi(idx)
		if err != nil {
			return "", fmt.Errorf("name %q: want task/subtask", args["name"])
		}
		ev.Task, ev.Subtask = task, int32(n)
		ev.State = clusterv1.TaskState(clusterv1.TaskState_value["TASK_STATE_"+args["state"]])
		if ev.State == 0 {
			return "", fmt.Errorf("unknown state %q", args["state"])
		}
		ev.TaskManager = args["tm"]
		if s := m.subtask(task, int32(n)); ev.TaskManager == "" && s != nil {
			ev.TaskManager = s.GetTaskManagerId()
		}
		if u := args["unreadable"]; u != "" {
			if ev.Unreadable, err = strconv.ParseInt(u, 10, 64); err != nil {
				return "", err
			}
		}
	case "tm-lost":
		ev.Type, ev.TaskManager = EventTaskManagerLost, args["tm"]
	case "deploy-unreachable":
		ev.Type = EventDeployUnreachable
	case "cancel":
		ev.Type = EventCancel
	case "fail":
		ev.Type = EventFail
	case "stopping":
		ev.Type = EventStopping
	case "stop":
		ev.Type = EventStop
	case "tick":
		ev.Type = EventTick
	case "restore-chosen":
		_, ev.Retry = args["retry"]
		ev.Type = EventRestoreChosen
	case "jobmanager-restarted":
		_, ev.Recover = args["recover"]
		ev.Type = EventJobManagerRestarted
	default:
		return "", fmt.Errorf("unknown command %q", cmd)
	}
	before := describe(m)
	actions, err := m.Step(ev)
	if err != nil {
		if after := describe(m); after != before {
			return "", fmt.Errorf("%s returned %v but changed the state:\nbefore: %s\nafter:  %s", cmd, err, before, after)
		}
		if errors.Is(err, ErrTerminal) {
			return "error: ErrTerminal", nil
		}
		return "unexpected error: " + err.Error(), nil
	}
	if len(actions) == 0 {
		return "ok", nil
	}
	lines := make([]string, len(actions))
	for i, a := range actions {
		lines[i] = a.String()
	}
	return strings.Join(lines, "\n"), nil
}

// describe renders the machine's state: status, attempt, slots, then each
// subtask as task/index=STATE@tm.
func describe(m *Machine) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s attempt=%d", ShortStatus(m.Status()), m.Attempt())
	if m.slots != nil {
		fmt.Fprintf(&b, " slots=%s", strings.Join(m.slots, ","))
	}
	if m.WantsSlots() {
		b.WriteString(" wants-slots")
	}
	if m.stoppedWith != "" {
		fmt.Fprintf(&b, " stopped-with=%s", m.stoppedWith)
	}
	if f := m.d.GetSummary().GetFailure(); f != "" {
		fmt.Fprintf(&b, " failure=%q", f)
	}
	for _, t := range m.d.GetTasks() {
		for _, s := range t.GetSubtasks() {
			st := strings.TrimPrefix(s.GetState().String(), "TASK_STATE_")
			fmt.Fprintf(&b, "\n%s/%d=%s", t.GetId(), s.GetIndex(), st)
			if s.GetTaskManagerId() != "" {
				b.WriteString("@" + s.GetTaskManagerId())
			}
		}
	}
	return b.String()
}
