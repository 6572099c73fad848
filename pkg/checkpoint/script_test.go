package checkpoint

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/scripttest"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/*.txt with the actual output (review the diff before committing)")

// TestScripts runs the scenarios in testdata/*.txt: blocks of
//
//	<command> key=value ... [flag]
//	----
//	<expected actions, one a line; "ok" when none>
//
// Commands: init tasks=v/0,v/1,... [interval= minpause= timeout= (ms)]
// [concurrent= tolerable= retain=] [t=MS] [last-id= retained=1,2]; tick t=;
// ack id= task= [handle=] [t=]; decline id= task= [reason=] [t=]; finalized
// id= [err] [t=]; task-finished task= [t=]; job-finished [t=]; savepoint [t=];
// state. Times are milliseconds since the Unix epoch. An error prints as
// "error: <sentinel>" and the harness checks that the state did not change.
func TestScripts(t *testing.T) {
	scripttest.RunDir(t, "testdata", *rewrite, func(t *testing.T) func(string, map[string]string) (string, error) {
		var c *Coordinator
		return func(cmd string, args map[string]string) (string, error) {
			return runCommand(t, &c, cmd, args)
		}
	})
}

var sentinelNames = map[error]string{
	ErrInvalidConfig: "ErrInvalidConfig", ErrUnknownTask: "ErrUnknownTask",
	ErrUnknownCheckpoint: "ErrUnknownCheckpoint", ErrDuplicateAck: "ErrDuplicateAck", ErrTaskFinished: "ErrTaskFinished",
	ErrNotFinalizing: "ErrNotFinalizing", ErrStopped: "ErrStopped", ErrUnknownEvent: "ErrUnknownEvent",
}

func errorName(err error) string {
	for s, name := range sentinelNames {
		if errors.Is(err, s) {
			return "error: " + name
		}
	}
	return "unexpected error: " + err.Error()
}

func parseTask(s string) (TaskID, error) {
	v, n, ok := strings.Cut(s, "/")
	if !ok {
		return TaskID{}, fmt.Errorf("task %q: want vertex/subtask", s)
	}
	i, err := strconv.Atoi(n)
	return TaskID{Vertex: v, Subtask: i}, err
}

func ms(args map[string]string, key string) (time.Duration, error) {
	v, ok := args[key]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return time.Duration(n) * time.Millisecond, err
}

func num(args map[string]string, key string) (int, error) {
	v, ok := args[key]
	if !ok {
		return 0, nil
	}
	return strconv.Atoi(v)
}

func runCommand(t *testing.T, cp **Coordinator, cmd string, args map[string]string) (string, error) {
	var at time.Time
	if v, ok := args["t"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return "", err
		}
		at = time.UnixMilli(n)
	}
	if cmd == "init" {
		var cfg Config
		var err error
		for key, dst := range map[string]*time.Duration{"interval": &cfg.Interval, "minpause": &cfg.MinPause, "timeout": &cfg.Timeout} {
			if *dst, err = ms(args, key); err != nil {
				return "", err
			}
		}
		for key, dst := range map[string]*int{"concurrent": &cfg.MaxConcurrent, "tolerable": &cfg.TolerableFailures, "retain": &cfg.Retain} {
			if *dst, err = num(args, key); err != nil {
				return "", err
			}
		}
		var tasks []TaskID
		for _, s := range strings.Split(args["tasks"], ",") {
			if s == "" {
				continue
			}
			task, err := parseTask(s)
			if err != nil {
				return "", err
			}
			tasks = append(tasks, task)
		}
		var resume Resume
		last, err := num(args, "last-id")
		if err != nil {
			return "", err
		}
		resume.LastID = uint64(last)
		if v := args["retained"]; v != "" {
			for _, s := range strings.Split(v, ",") {
				n, err := strconv.ParseUint(s, 10, 64)
				if err != nil {
					return "", err
				}
				resume.Retained = append(resume.Retained, n)
			}
		}
		if at.IsZero() {
			at = time.UnixMilli(0)
		}
		c, err := New(cfg, tasks, at, resume)
		if err != nil {
			return errorName(err), nil
		}
		*cp = c
		return "ok", nil
	}
	c := *cp
	if c == nil {
		return "", fmt.Errorf("%s before init", cmd)
	}
	if cmd == "state" {
		return c.String(), nil
	}
	ev := Event{Time: at}
	id, err := num(args, "id")
	if err != nil {
		return "", err
	}
	ev.ID = uint64(id)
	if s, ok := args["task"]; ok {
		if ev.Task, err = parseTask(s); err != nil {
			return "", err
		}
	}
	if h, ok := args["handle"]; ok {
		ev.Handle = []byte(h)
	}
	if r, ok := args["reason"]; ok {
		if ev.Reason, err = ParseReason(r); err != nil {
			return "", err
		}
	}
	if _, ok := args["err"]; ok {
		ev.Err = errors.New("metadata write failed")
	}
	switch cmd {
	case "tick":
		ev.Type = EventTick
	case "ack":
		ev.Type = EventAck
	case "decline":
		ev.Type = EventDecline
	case "finalized":
		ev.Type = EventFinalized
	case "task-finished":
		ev.Type = EventTaskFinished
	case "job-finished":
		ev.Type = EventJobFinished
	case "savepoint":
		ev.Type = EventSavepoint
	default:
		return "", fmt.Errorf("unknown command %q", cmd)
	}
	before := c.String()
	actions, err := c.Step(ev)
	if err != nil {
		if after := c.String(); after != before {
			t.Errorf("%s returned %v but changed the state:\nbefore: %s\nafter:  %s", cmd, err, before, after)
		}
		if actions != nil {
			t.Errorf("%s returned %v and actions %v", cmd, err, actions)
		}
		return errorName(err), nil
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
