package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowrt/flow/internal/datadir"
	"github.com/flowrt/flow/pkg/api"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// syncBuffer is a log sink read while the daemon writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemon is a jobmanager or taskmanager command running in this process.
type daemon struct {
	log       *syncBuffer
	cancel    context.CancelFunc
	done      chan error
	rpc, http string
}

var listeningRE = regexp.MustCompile(`msg=listening rpc_address=(\S+)(?: http_address=(\S+))?`)

// run executes cmd with args until ctx ends and returns its error.
func run(ctx context.Context, cmd *cobra.Command, log io.Writer, args ...string) error {
	cmd.SetArgs(append(args, "--log-format", "text"))
	cmd.SetOut(io.Discard)
	cmd.SetErr(log)
	return cmd.ExecuteContext(ctx)
}

// start runs cmd and returns once it logged its addresses.
func start(t *testing.T, cmd *cobra.Command, args ...string) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{log: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { d.done <- run(ctx, cmd, d.log, args...) }()
	t.Cleanup(func() { d.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := listeningRE.FindStringSubmatch(d.log.String()); m != nil {
			d.rpc, d.http = m[1], m[2]
			return d
		}
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("%s exited before listening: %v\n%s", cmd.Name(), err, d.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log its addresses:\n%s", cmd.Name(), d.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.cancel()
	select {
	case err := <-d.done:
		d.done <- err
		if err != nil {
			t.Errorf("daemon exited with %v\n%s", err, d.log)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("daemon did not stop:\n%s", d.log)
	}
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

// get returns the status code and body of GET url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// await polls cond until it holds, failing the test after limit.
func await(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func jmArgs(rpc, dir string) []string {
	return []string{"--rpc-address", rpc, "--http-address", "127.0.0.1:0", "--data-dir", dir, "--heartbeat-timeout", "1s"}
}

func tmArgs(jm, dir string) []string {
	return []string{"--jobmanager", jm, "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
		"--data-dir", dir, "--slots", "1", "--state-memory", "16MiB", "--id", "tm-" + filepath.Base(dir)}
}

// A second daemon on a data dir in use exits at once with one line naming
// the holder's pid, before it opens anything; once the first stops, the
// directory is free again.
func TestSecondDaemonOnSameDataDirRefused(t *testing.T) {
	dir := t.TempDir()
	jmDir, tmDir := filepath.Join(dir, "jm"), filepath.Join(dir, "tm")
	jm := start(t, JobManagerCommand(api.Default), jmArgs("127.0.0.1:0", jmDir)...)
	tm := start(t, TaskManagerCommand(api.Default), tmArgs(jm.rpc, tmDir)...)
	want := func(d string) string {
		return fmt.Sprintf("data dir %s is in use by another process (pid %d): stop it or choose another --data-dir", d, os.Getpid())
	}
	for _, tc := range []struct {
		cmd  *cobra.Command
		args []string
		dir  string
	}{
		{JobManagerCommand(api.Default), jmArgs("127.0.0.1:0", jmDir), jmDir},
		{TaskManagerCommand(api.Default), tmArgs(jm.rpc, tmDir), tmDir},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var log syncBuffer
		err := run(ctx, tc.cmd, &log, tc.args...)
		cancel()
		if !errors.Is(err, datadir.ErrInUse) || err.Error() != want(tc.dir) {
			t.Errorf("second %s: %v, want %q", tc.cmd.Name(), err, want(tc.dir))
		}
		if strings.Contains(log.String(), "listening") {
			t.Errorf("the second %s started listening:\n%s", tc.cmd.Name(), log.String())
		}
	}
	tm.stop(t)
	jm.stop(t)
	start(t, JobManagerCommand(api.Default), jmArgs("127.0.0.1:0", jmDir)...)
	start(t, TaskManagerCommand(api.Default), tmArgs(jm.rpc, tmDir)...)
}

// /livez answers while the process serves; /readyz (and its alias
// /healthz) answers 503 with the reason until the TaskManager registers,
// and for the JobManager while its job store takes no writes. The
// TaskManager reports its HTTP address to the JobManager.
func TestReadiness(t *testing.T) {
	dir := t.TempDir()
	jmAddr, jmDir := freeAddr(t), filepath.Join(dir, "jm")
	tm := start(t, TaskManagerCommand(api.Default), tmArgs(jmAddr, filepath.Join(dir, "tm"))...)
	if code, body := get(t, "http://"+tm.http+"/livez"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("TaskManager /livez without a JobManager: %d %q, want 200 ok", code, body)
	}
	for _, path := range []string{"/readyz", "/healthz"} {
		code, body := get(t, "http://"+tm.http+path)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "not registered with the JobManager at "+jmAddr) || strings.Count(body, "\n") != 1 {
			t.Errorf("TaskManager %s without a JobManager: %d %q, want 503 and one line saying it is not registered", path, code, body)
		}
	}

	jm := start(t, JobManagerCommand(api.Default), jmArgs(jmAddr, jmDir)...)
	await(t, 10*time.Second, "the TaskManager's /readyz to answer 200", func() bool {
		code, _ := get(t, "http://"+tm.http+"/readyz")
		return code == http.StatusOK
	})
	if code, body := get(t, "http://"+tm.http+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("TaskManager /healthz once registered: %d %q", code, body)
	}

	conn, err := grpc.NewClient(jm.rpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := clusterv1.NewJobManagerServiceClient(conn).ListTaskManagers(ctx, &clusterv1.ListTaskManagersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if tms := resp.GetTaskManagers(); len(tms) != 1 || tms[0].GetHttpAddress() != tm.http {
		t.Errorf("ListTaskManagers: %v, want one TaskManager with http_address %s", tms, tm.http)
	}

	if code, body := get(t, "http://"+jm.http+"/readyz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("JobManager /readyz: %d %q", code, body)
	}
	// Replace the job store's directory by a file (chmod would not deny
	// root): not ready, naming the store; ready again once it is back.
	store := filepath.Join(jmDir, "jobs")
	if err := os.Rename(store, store+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(store, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/readyz", "/healthz"} {
		code, body := get(t, "http://"+jm.http+path)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "job store "+store+" is not writable") || strings.Count(body, "\n") != 1 {
			t.Errorf("JobManager %s with an unwritable store: %d %q, want 503 and one line naming %s", path, code, body, store)
		}
	}
	if code, _ := get(t, "http://"+jm.http+"/livez"); code != http.StatusOK {
		t.Errorf("JobManager /livez with an unwritable store: %d, want 200 (alive, not ready)", code)
	}
	if err := os.Remove(store); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(store+".away", store); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, "http://"+jm.http+"/readyz"); code != http.StatusOK {
		t.Errorf("JobManager /readyz once the store is back: %d %q", code, body)
	}
}

var standbyHTTPRE = regexp.MustCompile(`msg="standby: serving probes" http_address=(\S+)`)

// With --high-availability file, a second JobManager on the data dir
// waits as a standby: it does not listen for RPC, its /livez answers and
// its /readyz is 503 naming the leader; stopped, it exits cleanly. Once
// the leader stops, a new JobManager leads with the next epoch. An
// unknown mode is refused with one line.
func TestStandbyJobManager(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "jm")
	ha := func(rpc string) []string { return append(jmArgs(rpc, dir), "--high-availability", "file") }
	leader := start(t, JobManagerCommand(api.Default), ha("127.0.0.1:0")...)
	if !strings.Contains(leader.log.String(), "leader_epoch=1 ") {
		t.Fatalf("the first leader's epoch is not 1:\n%s", leader.log)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var log syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, JobManagerCommand(api.Default), &log, ha("127.0.0.1:0")...) }()
	var httpAddr string
	await(t, 10*time.Second, "the standby's probes", func() bool {
		m := standbyHTTPRE.FindStringSubmatch(log.String())
		if m != nil {
			httpAddr = m[1]
		}
		return m != nil
	})
	await(t, 10*time.Second, "the standby to see the leader", func() bool {
		return strings.Contains(log.String(), "another JobManager leads")
	})
	if code, _ := get(t, "http://"+httpAddr+"/livez"); code != http.StatusOK {
		t.Errorf("standby /livez: %d, want 200", code)
	}
	code, body := get(t, "http://"+httpAddr+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "standby JobManager: jm-") || !strings.Contains(body, leader.rpc) {
		t.Errorf("standby /readyz: %d %q, want 503 naming the leader at %s", code, body, leader.rpc)
	}
	if strings.Contains(log.String(), "msg=listening") {
		t.Errorf("the standby listens for RPC:\n%s", log.String())
	}
	if _, m := get(t, "http://"+httpAddr+"/metrics"); !strings.Contains(m, "\nflow_jobmanager_leading 0\n") {
		t.Errorf("the standby's metrics do not say it does not lead:\n%s", grepMetric(m, "flow_jobmanager_lead"))
	}
	if _, m := get(t, "http://"+leader.http+"/metrics"); !strings.Contains(m, "\nflow_jobmanager_leading 1\n") || !strings.Contains(m, "\nflow_jobmanager_leader_epoch 1\n") {
		t.Errorf("the leader's metrics: %s", grepMetric(m, "flow_jobmanager_lead"))
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stopped standby: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the standby did not stop")
	}

	leader.stop(t)
	next := start(t, JobManagerCommand(api.Default), ha("127.0.0.1:0")...)
	if !strings.Contains(next.log.String(), "leader_epoch=2 ") {
		t.Fatalf("the next leader's epoch is not 2:\n%s", next.log)
	}

	err := run(context.Background(), JobManagerCommand(api.Default), io.Discard, append(jmArgs("127.0.0.1:0", t.TempDir()), "--high-availability", "zookeeper")...)
	if err == nil || err.Error() != `--high-availability "zookeeper": want none or file` {
		t.Errorf("unknown mode: %v", err)
	}
}

// grepMetric returns the lines of a /metrics body that mention name.
func grepMetric(body, name string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, name) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
