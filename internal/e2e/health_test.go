package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Both daemons serve the standard gRPC health service (SERVING once ready:
// a TaskManager when registered), and Go's profiles only with --pprof.
func TestGRPCHealthAndPprof(t *testing.T) {
	dir := t.TempDir()
	jm := start(t, "jobmanager", "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "jm"), "--pprof")
	jmAddr, jmHTTP := jm.addresses()
	tm := start(t, "taskmanager", "--jobmanager", jmAddr, "--slots", "1", "--id", "tm-h",
		"--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "tm"))
	tmAddr, tmHTTP := tm.addresses()
	for _, addr := range []string{jmAddr, tmAddr} {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		hc := healthpb.NewHealthClient(conn)
		waitFor(t, 20*time.Second, "gRPC health SERVING at "+addr, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
			return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
		})
		conn.Close()
	}
	get := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("http://" + jmHTTP + "/debug/pprof/"); code != http.StatusOK {
		t.Errorf("JobManager with --pprof: /debug/pprof/ = %d", code)
	}
	if code := get("http://" + tmHTTP + "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("TaskManager without --pprof: /debug/pprof/ = %d, want 404", code)
	}
}
