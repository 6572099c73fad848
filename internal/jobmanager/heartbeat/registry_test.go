package heartbeat

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Heartbeat intervals and TTLs grow with the cluster so that the
// JobManager gets at most maxHeartbeatRate heartbeats per second.
func TestHeartbeatTTLScalesWithTheCluster(t *testing.T) {
	r := New(2*time.Second, 10*time.Second, nil)
	if iv, ttl := r.scaledLocked(10); iv != 2*time.Second || ttl != 10*time.Second {
		t.Fatalf("10 TaskManagers: interval %s ttl %s, want the configured 2s/10s", iv, ttl)
	}
	iv, ttl := r.scaledLocked(500)
	if iv != 10*time.Second || ttl != 50*time.Second {
		t.Fatalf("500 TaskManagers: interval %s ttl %s, want 10s/50s (50 heartbeats/s)", iv, ttl)
	}
}
