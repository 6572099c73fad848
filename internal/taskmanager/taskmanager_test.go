package taskmanager

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/flowrt/flow/internal/jobmanager"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The wait between registration attempts never exceeds the JobManager's
// heartbeat interval (2 s while it is unknown), however many attempts
// failed, and it starts short.
func TestRetryDelayCappedAtHeartbeatInterval(t *testing.T) {
	for _, interval := range []time.Duration{0, 50 * time.Millisecond, 400 * time.Millisecond, 2 * time.Second, 30 * time.Second} {
		limit := interval
		if limit == 0 {
			limit = defaultHeartbeatInterval
		}
		if d := retryDelay(0, interval); d != min(firstRetryDelay, limit) {
			t.Errorf("interval %s: first delay %s, want %s", interval, d, min(firstRetryDelay, limit))
		}
		prev := time.Duration(0)
		for attempt := 0; attempt < 1000; attempt++ {
			d := retryDelay(attempt, interval)
			if d > limit || d < prev {
				t.Fatalf("interval %s: attempt %d waits %s (previous %s), want a non-decreasing delay of at most %s", interval, attempt, d, prev, limit)
			}
			prev = d
		}
		if prev != limit {
			t.Errorf("interval %s: the delay levels off at %s, want %s", interval, prev, limit)
		}
	}
	if maxConnectBackoff*6/5 >= defaultHeartbeatInterval {
		t.Errorf("gRPC's reconnection backoff (%s + 20%%) must stay below the default heartbeat interval %s", maxConnectBackoff, defaultHeartbeatInterval)
	}
}

// jobManager is an in-process JobManager serving on addr until stop.
func startJobManager(t *testing.T, addr, dataDir string, heartbeatTimeout time.Duration) (stop func()) {
	t.Helper()
	jm, err := jobmanager.New(jobmanager.Options{DataDir: dataDir, HeartbeatTimeout: heartbeatTimeout})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	jm.Register(srv)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.Serve(l) }()
	go func() { defer wg.Done(); jm.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			srv.Stop()
			cancel()
			wg.Wait()
			jm.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// await polls cond until it holds and returns how long that took; it fails
// the test after limit.
func await(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// Ready follows the registration: not ready before the JobManager is up,
// ready once registered, not ready within the heartbeat timeout of losing
// it, and ready again within about a heartbeat interval of a restarted
// JobManager's start, even after a long outage (gRPC's reconnection
// backoff used to grow to several seconds by then).
func TestReadyFollowsRegistration(t *testing.T) {
	const hbTimeout = time.Second // heartbeat interval 200ms
	jmAddr, jmDir := freeAddr(t), t.TempDir()
	tm, err := New(Options{ID: "tm-ready", JobManager: jmAddr, Slots: 1, DataDir: t.TempDir(), StateMemory: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	tm.Register(srv)
	tm.SetAddress(l.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.Serve(l) }()
	go func() { defer wg.Done(); _ = tm.Run(ctx) }()
	defer func() {
		cancel()
		srv.Stop()
		wg.Wait()
	}()

	await(t, 5*time.Second, "a failed registration attempt", func() bool {
		err := tm.Ready()
		return errors.Is(err, ErrNotReady) && strings.Contains(err.Error(), "not registered with the JobManager at "+jmAddr) &&
			!strings.Contains(err.Error(), "(registering)")
	})
	t.Logf("before the JobManager: %v", tm.Ready())

	stop := startJobManager(t, jmAddr, jmDir, hbTimeout)
	await(t, 5*time.Second, "ready after the JobManager started", func() bool { return tm.Ready() == nil })

	stop()
	down := time.Now()
	took := await(t, hbTimeout+2*time.Second, "not ready after the JobManager stopped", func() bool { return tm.Ready() != nil })
	t.Logf("not ready %s after the JobManager stopped: %v", took, tm.Ready())

	// A long outage: gRPC's default backoff would be past 4 s apart by now.
	time.Sleep(6*time.Second - time.Since(down))
	startJobManager(t, jmAddr, jmDir, hbTimeout)
	interval := hbTimeout / 5
	limit := interval + maxConnectBackoff*6/5 + 700*time.Millisecond // 0.7 s for a busy machine
	took = await(t, 10*time.Second, "ready after the JobManager restarted", func() bool { return tm.Ready() == nil })
	t.Logf("registered again %s after the JobManager restarted", took)
	if took > limit {
		t.Errorf("registered again %s after the JobManager restarted; want at most %s (heartbeat interval %s)", took, limit, interval)
	}
}
