package api_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/api"
)

type plainCtx struct{}

func (plainCtx) Info() api.TaskInfo             { return api.TaskInfo{OperatorUID: "op-1"} }
func (plainCtx) Logger() *slog.Logger           { return slog.Default() }
func (plainCtx) Metrics() prometheus.Registerer { return prometheus.NewRegistry() }
func (plainCtx) Clock() api.Clock               { return nil }
func (plainCtx) Done() <-chan struct{}          { return nil }
func (plainCtx) DataDir() string                { return "" }

func TestStateOfPlainContext(t *testing.T) {
	if _, err := api.KeyedStateStoreOf(plainCtx{}); !errors.Is(err, api.ErrNoKeyedState) || !strings.Contains(err.Error(), "op-1") {
		t.Fatalf("KeyedStateStoreOf: %v", err)
	}
	if _, err := api.TimerServiceOf(plainCtx{}); !errors.Is(err, api.ErrNoKeyedState) {
		t.Fatalf("TimerServiceOf: %v", err)
	}
	if _, err := api.OperatorStateStoreOf(plainCtx{}); !errors.Is(err, api.ErrNoOperatorState) {
		t.Fatalf("OperatorStateStoreOf: %v", err)
	}
}

func TestTTLConfigValidate(t *testing.T) {
	var none *api.TTLConfig
	if err := none.Validate(); err != nil {
		t.Fatalf("nil TTL: %v", err)
	}
	for _, bad := range []api.TTLConfig{{}, {TTL: time.Microsecond}, {TTL: time.Second, Update: 7}, {TTL: time.Second, Time: 9}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if err := (&api.TTLConfig{TTL: time.Minute, Update: api.OnReadAndWrite, Visibility: api.ReturnExpiredIfNotCleanedUp, Time: api.TTLEventTime}).Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
}
