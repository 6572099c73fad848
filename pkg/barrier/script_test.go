package barrier

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

// TestScripts runs the scenarios in testdata/*.txt. Each scenario is a
// sequence of blocks:
//
//	# comment
//	<command> key=value ... [flag]
//	----
//	<expected output, one action per line, "ok" when there is none>
//
// Commands: init channels=N [mode=aligned|unaligned|at-least-once]
// [timeout=MS]; barrier id= ch= [t=MS] [savepoint]; record ch=; end ch=
// [t=MS]; cancel id= ch=; abort id=; tick t=MS; trigger id= [t=MS]
// [savepoint]; state. Times are milliseconds since the Unix epoch. An error
// prints as "error: <sentinel>" and the harness checks the state did not
// change.
func TestScripts(t *testing.T) {
	scripttest.RunDir(t, "testdata", *rewrite, func(t *testing.T) func(string, map[string]string) (string, error) {
		var m *Machine
		return func(cmd string, args map[string]string) (string, error) {
			return runCommand(t, &m, cmd, args)
		}
	})
}

var sentinels = []error{
	ErrInvalidConfig, ErrUnknownChannel, ErrInvalidID, ErrChannelEnded, ErrChannelBlocked,
	ErrDuplicateBarrier, ErrNotSource, ErrSourceTask, ErrUnknownEvent,
}

var sentinelNames = map[error]string{
	ErrInvalidConfig: "ErrInvalidConfig", ErrUnknownChannel: "ErrUnknownChannel",
	ErrInvalidID: "ErrInvalidID", ErrChannelEnded: "ErrChannelEnded",
	ErrChannelBlocked: "ErrChannelBlocked", ErrDuplicateBarrier: "ErrDuplicateBarrier",
	ErrNotSource: "ErrNotSource", ErrSourceTask: "ErrSourceTask", ErrUnknownEvent: "ErrUnknownEvent",
}

func errorName(err error) string {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return "error: " + sentinelNames[s]
		}
	}
	return "unexpected error: " + err.Error()
}

func msTime(args map[string]string, key string) (time.Time, error) {
	v, ok := args[key]
	if !ok {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s=%q: %w", key, v, err)
	}
	return time.UnixMilli(n), nil
}

func intArg(args map[string]string, key string, def int) (int, error) {
	v, ok := args[key]
	if !ok {
		return def, nil
	}
	return strconv.Atoi(v)
}

func runCommand(t *testing.T, mp **Machine, cmd string, args map[string]string) (string, error) {
	if cmd == "init" {
		n, err := intArg(args, "channels", 0)
		if err != nil {
			return "", err
		}
		timeout, err := intArg(args, "timeout", 0)
		if err != nil {
			return "", err
		}
		cfg := Config{Channels: n, AlignedTimeout: time.Duration(timeout) * time.Millisecond}
		if s, ok := args["mode"]; ok {
			if cfg.Mode, err = ParseMode(s); err != nil {
				return errorName(err), nil
			}
		}
		m, err := New(cfg)
		if err != nil {
			return errorName(err), nil
		}
		*mp = m
		return "ok", nil
	}
	m := *mp
	if m == nil {
		return "", fmt.Errorf("%s before init", cmd)
	}
	if cmd == "state" {
		return m.String(), nil
	}
	var ev Event
	var err error
	id, err := intArg(args, "id", 0)
	if err != nil {
		return "", err
	}
	ev.ID = uint64(id)
	if ev.Channel, err = intArg(args, "ch", 0); err != nil {
		return "", err
	}
	if ev.Time, err = msTime(args, "t"); err != nil {
		return "", err
	}
	_, ev.Options.Savepoint = args["savepoint"]
	switch cmd {
	case "barrier":
		ev.Type = EventBarrier
	case "record":
		ev.Type = EventRecord
	case "end":
		ev.Type = EventEnd
	case "cancel":
		ev.Type = EventCancel
	case "abort":
		ev.Type = EventAbort
	case "tick":
		ev.Type = EventTick
	case "trigger":
		ev.Type = EventTrigger
	default:
		return "", fmt.Errorf("unknown command %q", cmd)
	}
	before := m.String()
	actions, err := m.Step(ev)
	if err != nil {
		if after := m.String(); after != before {
			t.Errorf("%s returned %v but changed the state:\nbefore: %s\nafter:  %s", cmd, err, before, after)
		}
		if len(actions) != 0 {
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
