package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// The Kafka end-to-end tests run the kfakebroker program (franz-go's kfake
// in a process of its own) on a loopback port, real jobmanager and
// taskmanager processes, and Debian's kcat as the outside producer and
// read_committed consumer.

var buildBroker sync.Once

// kafkaBroker starts kfakebroker with the given topics ("name:partitions")
// and returns its address.
func kafkaBroker(t *testing.T, topics ...string) string {
	t.Helper()
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatal("kcat is not installed (Debian package kcat; .ci/run installs it)")
	}
	var berr error
	buildBroker.Do(func() {
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "kfakebroker"), "github.com/flowrt/flow/internal/kfakebroker").CombinedOutput()
		if err != nil {
			berr = fmt.Errorf("build kfakebroker: %v\n%s", err, out)
		}
	})
	if berr != nil {
		t.Fatal(berr)
	}
	if _, err := os.Stat(filepath.Join(binDir, "kfakebroker")); err != nil {
		t.Fatalf("kfakebroker was not built: %v", err)
	}
	args := []string{"-listen", "127.0.0.1:0"}
	for _, tp := range topics {
		args = append(args, "-topic", tp)
	}
	cmd := exec.Command(filepath.Join(binDir, "kfakebroker"), args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				addr <- a
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case a := <-addr:
		return a
	case <-exited:
		t.Fatalf("kfakebroker exited: %s", stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("kfakebroker did not print its address")
	}
	return ""
}

// kcatProducer runs `kcat -P` writing records key:value lines; write
// sends lines, close ends the input and waits for kcat to deliver all.
type kcatProducer struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	out strings.Builder
}

func startKcatProducer(t *testing.T, broker, topic string) *kcatProducer {
	t.Helper()
	p := &kcatProducer{t: t}
	p.cmd = exec.Command("kcat", "-b", broker, "-t", topic, "-P", "-K", "\t", "-X", "linger.ms=5", "-X", "enable.idempotence=true")
	in, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.in = in
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out // read only after Wait
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	return p
}

// write sends lines to kcat (from any goroutine).
func (p *kcatProducer) write(lines string) error {
	if _, err := io.WriteString(p.in, lines); err != nil {
		return fmt.Errorf("write to kcat: %w", err)
	}
	return nil
}

func (p *kcatProducer) close() {
	p.t.Helper()
	p.in.Close()
	if err := p.cmd.Wait(); err != nil {
		p.t.Fatalf("kcat producer: %v\n%s", err, p.out.String())
	}
}

// kcatReadCommitted reads every committed record value of topic with
// kcat as a read_committed consumer (-e: up to the end of each partition).
func kcatReadCommitted(t *testing.T, broker, topic string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kcat", "-b", broker, "-t", topic, "-C", "-e", "-q", "-o", "beginning",
		"-X", "isolation.level=read_committed", "-f", "%s\n")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat consumer: %v\n%s", err, stderr.String())
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// checkKafkaCounts checks count outputs {"key","count"}: for every key of
// want, counts 1..want[key] each exactly once, nothing else.
func checkKafkaCounts(t *testing.T, lines []string, want map[string]int64, atLeastOnce bool) {
	t.Helper()
	got := map[string]map[int64]int{}
	for _, l := range lines {
		var r struct {
			Key   string `json:"key"`
			Count int64  `json:"count"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("output %q: %v", l, err)
		}
		if got[r.Key] == nil {
			got[r.Key] = map[int64]int{}
		}
		got[r.Key][r.Count]++
	}
	bad := 0
	for k, n := range want {
		for c := int64(1); c <= n; c++ {
			if seen := got[k][c]; seen == 0 || (!atLeastOnce && seen != 1) {
				if bad < 10 {
					t.Errorf("key %s: count %d appears %d times", k, c, seen)
				}
				bad++
			}
		}
		if len(got[k]) != int(n) {
			if bad < 10 {
				t.Errorf("key %s: %d distinct counts, want 1..%d", k, len(got[k]), n)
			}
			bad++
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d keys in the output, want %d", len(got), len(want))
	}
	if bad > 0 {
		t.Fatalf("%d wrong counts in %d output records", bad, len(lines))
	}
}

// kafkaCluster is a JobManager with TaskManagers for the Kafka tests.
type kafkaCluster struct {
	t    *testing.T
	dir  string
	jm   string
	c    clusterv1.JobManagerServiceClient
	tms  map[string]*proc
	next int
}

func startKafkaCluster(t *testing.T, tms int) *kafkaCluster {
	t.Helper()
	dir := t.TempDir()
	jm := start(t, "jobmanager", "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "jm"), "--heartbeat-timeout", "2s", "--log-format", "text")
	jmAddr, _ := jm.addresses()
	k := &kafkaCluster{t: t, dir: dir, jm: jmAddr, c: client(t, jmAddr), tms: map[string]*proc{}}
	for i := 0; i < tms; i++ {
		k.startTM()
	}
	waitFor(t, 20*time.Second, "active TaskManagers", func() bool {
		st := taskManagers(t, k.c)
		for id := range k.tms {
			if st[id] != active {
				return false
			}
		}
		return true
	})
	return k
}

func (k *kafkaCluster) startTM() {
	id := fmt.Sprintf("tm-%d", k.next)
	k.next++
	p := start(k.t, "taskmanager "+id, "--jobmanager", k.jm, "--slots", "4", "--id", id,
		"--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--data-dir", filepath.Join(k.dir, id), "--log-format", "text")
	p.addresses()
	k.tms[id] = p
}

func (k *kafkaCluster) submit(spec string, args ...string) string {
	k.t.Helper()
	path := filepath.Join(k.dir, fmt.Sprintf("job-%d.yaml", time.Now().UnixNano()))
	writeFile(k.t, path, spec)
	out, err := flowctl(k.t, k.jm, append(append([]string{"run", "-d"}, args...), path)...)
	if err != nil {
		k.t.Fatalf("flowctl run: %v\n%s", err, out)
	}
	id := strings.TrimSpace(out)
	if m := submittedRE.FindStringSubmatch(out); m != nil {
		id = m[1]
	}
	if id == "" || strings.ContainsAny(id, " \n") {
		k.t.Fatalf("no job id in flowctl run -d output:\n%s", out)
	}
	return id
}

func (k *kafkaCluster) job(id string) *clusterv1.JobDetails {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := k.c.GetJob(ctx, &clusterv1.GetJobRequest{JobId: id})
	if err != nil {
		return nil
	}
	return resp.GetJob()
}

// running reports whether every subtask of the job runs.
func (k *kafkaCluster) running(id string) (*clusterv1.JobDetails, bool) {
	j := k.job(id)
	if j == nil || j.GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_RUNNING {
		return j, false
	}
	for _, tv := range j.GetTasks() {
		for _, s := range tv.GetSubtasks() {
			if s.GetState() != clusterv1.TaskState_TASK_STATE_RUNNING {
				return j, false
			}
		}
	}
	return j, true
}

func (k *kafkaCluster) lastCheckpoint(id string) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := k.c.ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: id})
	if err != nil {
		return 0
	}
	var n int64
	for _, cp := range resp.GetCheckpoints() {
		switch cp.GetStatus() {
		case clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED, clusterv1.CheckpointStatus_CHECKPOINT_STATUS_DISCARDED:
			n = max(n, cp.GetId())
		}
	}
	return n
}

// killBusiest SIGKILLs the TaskManager hosting most subtasks of the job,
// starts a replacement and waits for the job's next attempt.
func (k *kafkaCluster) killBusiest(id string) {
	k.t.Helper()
	var j *clusterv1.JobDetails
	waitFor(k.t, 30*time.Second, "the job running", func() bool {
		var ok bool
		j, ok = k.running(id)
		return ok
	})
	base := k.lastCheckpoint(id)
	waitFor(k.t, 20*time.Second, "a checkpoint of this attempt", func() bool { return k.lastCheckpoint(id) > base })
	hosts := map[string]int{}
	for _, tv := range j.GetTasks() {
		for _, s := range tv.GetSubtasks() {
			hosts[s.GetTaskManagerId()]++
		}
	}
	victim, most := "", 0
	for h, n := range hosts {
		if n > most && k.tms[h] != nil {
			victim, most = h, n
		}
	}
	if victim == "" {
		k.t.Fatalf("no live TaskManager hosts the job: %v", hosts)
	}
	attempt := j.GetSummary().GetAttempt()
	k.t.Logf("SIGKILL %s (%d subtasks), attempt %d, checkpoint %d", victim, most, attempt, k.lastCheckpoint(id))
	k.tms[victim].signal(syscall.SIGKILL)
	delete(k.tms, victim)
	k.startTM()
	waitFor(k.t, 30*time.Second, "the job to restart", func() bool {
		j := k.job(id)
		return j != nil && (j.GetSummary().GetAttempt() > attempt || isEnded(j))
	})
	if j := k.job(id); isEnded(j) {
		k.t.Fatalf("the job ended (%s: %s) instead of restarting", j.GetSummary().GetStatus(), j.GetSummary().GetFailure())
	}
}

// awaitOutput polls the read_committed output until it has at least n
// records and stopped growing, and returns it.
func awaitOutput(t *testing.T, broker, topic string, n int, timeout time.Duration) []string {
	t.Helper()
	var lines []string
	prev := -1
	waitFor(t, timeout, fmt.Sprintf("%d committed records in %s", n, topic), func() bool {
		lines = kcatReadCommitted(t, broker, topic)
		if len(lines) >= n && len(lines) == prev {
			return true
		}
		prev = len(lines)
		time.Sleep(500 * time.Millisecond)
		return false
	})
	return lines
}

const kafkaCountSpec = `name: kafka-count-%[1]s
parallelism: %[2]d
maxParallelism: 128
operators:
  - id: src
    type: kafka
    uid: src-v1
    config:
      brokers: [%[3]q]
      topics: [in]
      group: flow-count
  - id: count
    type: count
    uid: count-v1
    inputs: [src]
    keyBy: _key
  - id: sink
    type: kafka
    uid: sink-v1
    inputs: [count]
    config:
      brokers: [%[3]q]
      topic: out
      key: key
      deliveryGuarantee: %[4]s
      transactionTimeout: 1m
stateBackend:
  type: %[1]s
checkpoints: {interval: 500ms, timeout: 20s, storage: %[5]q, tolerableFailures: 100}
restart:
  strategy: fixed_delay
  attempts: 50
  delay: 500ms
`

// produceKeyed writes records n in [from, to) with kcat: key k<n mod
// keys>, value {"n":n}, paced at about rate records/s; it returns the
// records per key.
func produceKeyed(p *kcatProducer, from, to, keys, rate int, want map[string]int64) error {
	const tick = 20 * time.Millisecond
	per := max(rate*int(tick)/int(time.Second), 1)
	next := time.Now()
	for n := from; n < to; {
		var b strings.Builder
		for i := 0; i < per && n < to; i++ {
			k := fmt.Sprintf("k%d", n%keys)
			fmt.Fprintf(&b, "%s\t{\"n\":%d}\n", k, n)
			want[k]++
			n++
		}
		if err := p.write(b.String()); err != nil {
			return err
		}
		next = next.Add(tick)
		time.Sleep(time.Until(next)) // pacing the producer, not awaiting a condition
	}
	return nil
}

// TestKafkaExactlyOnceUnderKills: kcat produces keyed JSON into a
// 4-partition topic while kafka -> count (keyBy the Kafka key) -> kafka
// exactly_once runs with 500ms checkpoints; TaskManagers are SIGKILLed
// (and replaced) during the run; a read_committed kcat consumer then sees
// for every key the counts 1..N exactly once. Heap and Pebble; with
// at_least_once every count is there (some twice).
func TestKafkaExactlyOnceUnderKills(t *testing.T) {
	for _, v := range []struct{ backend, guarantee string }{
		{"heap", "exactly_once"}, {"pebble", "exactly_once"}, {"heap", "at_least_once"},
	} {
		backend := v.backend
		t.Run(backend+"-"+v.guarantee, func(t *testing.T) {
			t.Parallel()
			const (
				records = 15000
				keys    = 40
				rate    = 1500
				kills   = 3
			)
			broker := kafkaBroker(t, "in:4", "out:3")
			k := startKafkaCluster(t, 2)
			job := k.submit(fmt.Sprintf(kafkaCountSpec, backend, 2, broker, v.guarantee,
				"file://"+filepath.ToSlash(filepath.Join(k.dir, "checkpoints"))))
			prod := startKcatProducer(t, broker, "in")
			want := map[string]int64{}
			done := make(chan error, 1)
			go func() { done <- produceKeyed(prod, 0, records, keys, rate, want) }()
			for i := 0; i < kills; i++ {
				k.killBusiest(job)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			prod.close()
			lines := awaitOutput(t, broker, "out", records, 90*time.Second)
			checkKafkaCounts(t, lines, want, v.guarantee == "at_least_once")
			if j := k.job(job); j.GetSummary().GetAttempt() <= kills {
				t.Fatalf("attempt %d: the kills did not restart the job %d times", j.GetSummary().GetAttempt(), kills)
			}
		})
	}
}

// latestCheckpointPath is the path of the job's latest completed
// checkpoint.
func (k *kafkaCluster) latestCheckpointPath(id string) string {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := k.c.ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: id})
	if err != nil {
		k.t.Fatal(err)
	}
	var best *clusterv1.CheckpointInfo
	for _, cp := range resp.GetCheckpoints() {
		if cp.GetStatus() == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED && (best == nil || cp.GetId() > best.GetId()) {
			best = cp
		}
	}
	if best == nil || best.GetPath() == "" {
		k.t.Fatalf("job %s has no completed checkpoint with a path: %v", id, resp.GetCheckpoints())
	}
	return best.GetPath()
}

func (k *kafkaCluster) cancel(id string) {
	k.t.Helper()
	if out, err := flowctl(k.t, k.jm, "cancel", id); err != nil {
		k.t.Fatalf("flowctl cancel: %v\n%s", err, out)
	}
	waitFor(k.t, 30*time.Second, "the job canceled", func() bool { return isEnded(k.job(id)) })
}

// openTransaction reports whether a transaction holds read_committed
// readers of topic back: some partition's last stable offset is below its
// high watermark (kcat cannot show the last stable offset: the test asks
// with franz-go's admin client).
func openTransaction(t *testing.T, broker, topic string) bool {
	t.Helper()
	adm, done := kafkaAdmin(t, broker)
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lso, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	hw, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	open := false
	hw.Each(func(o kadm.ListedOffset) { open = open || lso[o.Topic][o.Partition].Offset < o.Offset })
	return open
}

func kafkaAdmin(t *testing.T, broker string) (*kadm.Client, func()) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker))
	if err != nil {
		t.Fatal(err)
	}
	return kadm.NewClient(cl), cl.Close
}

// addPartitions grows topic to n partitions.
func addPartitions(t *testing.T, broker, topic string, n int) {
	t.Helper()
	adm, done := kafkaAdmin(t, broker)
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := adm.UpdatePartitions(ctx, n, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("grow %s to %d partitions: %v", topic, n, err)
	}
}

// TestKafkaLingeringTransactionsLowerParallelism kills every TaskManager
// of an exactly_once job of parallelism 3 while its sink transactions are
// open (read_committed readers are then held back), cancels it and
// restores its latest checkpoint at parallelism 1: the restored sink
// aborts the lingering transactions of all three old subtasks (a
// read_committed reader is not blocked: the transactions would time out
// only after 1m) and the output is exactly once.
func TestKafkaLingeringTransactionsLowerParallelism(t *testing.T) {
	t.Parallel()
	const (
		keys = 30
		rate = 1500
	)
	broker := kafkaBroker(t, "in:4", "out:3")
	k := startKafkaCluster(t, 2)
	ck := "file://" + filepath.ToSlash(filepath.Join(k.dir, "checkpoints"))
	spec := strings.Replace(fmt.Sprintf(kafkaCountSpec, "heap", 3, broker, "exactly_once", ck), "tolerableFailures: 100}", "tolerableFailures: 100, retainOnCancel: true}", 1)
	job := k.submit(spec)
	prod := startKcatProducer(t, broker, "in")
	want := map[string]int64{}
	waitFor(t, 30*time.Second, "the job running", func() bool { _, ok := k.running(job); return ok })
	if err := produceKeyed(prod, 0, 4000, keys, rate, want); err != nil {
		t.Fatal(err)
	}
	// Keep records flowing while every TaskManager dies, so that each
	// sink subtask has a transaction open.
	errc := make(chan error, 1)
	go func() { errc <- produceKeyed(prod, 4000, 6000, keys, rate, want) }()
	waitFor(t, 20*time.Second, "an open transaction", func() bool { return openTransaction(t, broker, "out") })
	for id, p := range k.tms {
		p.signal(syscall.SIGKILL)
		delete(k.tms, id)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !openTransaction(t, broker, "out") {
		t.Fatal("no transaction was left open by the kill: the test does not test lingering transactions")
	}
	path := k.latestCheckpointPath(job)
	k.cancel(job)
	t.Logf("restoring %s at parallelism 1", path)
	k.startTM()
	job2 := k.submit(strings.Replace(spec, "parallelism: 3", "parallelism: 1", 1), "--from-checkpoint", path)
	waitFor(t, 30*time.Second, "the restored job running", func() bool { _, ok := k.running(job2); return ok })
	if err := produceKeyed(prod, 6000, 8000, keys, rate, want); err != nil {
		t.Fatal(err)
	}
	prod.close()
	lines := awaitOutput(t, broker, "out", 8000, 40*time.Second)
	checkKafkaCounts(t, lines, want, false)
	if openTransaction(t, broker, "out") {
		t.Fatal("a transaction is still open after the restored job committed everything")
	}
}

// TestKafkaSavepointMorePartitionsRescale stops a job with a savepoint at
// parallelism 2, adds two partitions to the input topic, produces while
// the job is stopped, and restores at parallelism 3: the source continues
// every partition at its offset and reads the new ones from the start, so
// the counts are exactly once.
func TestKafkaSavepointMorePartitionsRescale(t *testing.T) {
	t.Parallel()
	const (
		keys = 30
		rate = 2000
	)
	broker := kafkaBroker(t, "in:4", "out:2")
	k := startKafkaCluster(t, 2)
	ck := "file://" + filepath.ToSlash(filepath.Join(k.dir, "checkpoints"))
	spec := fmt.Sprintf(kafkaCountSpec, "pebble", 2, broker, "exactly_once", ck)
	job := k.submit(spec)
	want := map[string]int64{}
	prod := startKcatProducer(t, broker, "in")
	waitFor(t, 30*time.Second, "the job running", func() bool { _, ok := k.running(job); return ok })
	if err := produceKeyed(prod, 0, 5000, keys, rate, want); err != nil {
		t.Fatal(err)
	}
	prod.close()
	awaitOutput(t, broker, "out", 5000, 40*time.Second)
	sp, stderr, err := flowctlStdout(t, k.jm, "stop", job, "--savepoint-dir", filepath.Join(k.dir, "sp"))
	if err != nil {
		t.Fatalf("flowctl stop: %v\n%s", err, stderr)
	}
	sp = strings.TrimSpace(sp)
	if out, err := exec.Command("kcat", "-b", broker, "-L", "-t", "in").CombinedOutput(); err != nil || !strings.Contains(string(out), "4 partitions") {
		t.Fatalf("kcat -L: %v\n%s", err, out)
	}
	addPartitions(t, broker, "in", 6)
	prod = startKcatProducer(t, broker, "in")
	if err := produceKeyed(prod, 5000, 7000, keys, rate, want); err != nil {
		t.Fatal(err)
	}
	job2 := k.submit(strings.Replace(spec, "parallelism: 2", "parallelism: 3", 1), "--from-savepoint", sp)
	waitFor(t, 30*time.Second, "the restored job running", func() bool { _, ok := k.running(job2); return ok })
	if err := produceKeyed(prod, 7000, 9000, keys, rate, want); err != nil {
		t.Fatal(err)
	}
	prod.close()
	lines := awaitOutput(t, broker, "out", 9000, 40*time.Second)
	checkKafkaCounts(t, lines, want, false)
}

// TestKafkaPartitionWatermarksIdlePartition: records go to one partition
// of a 2-partition topic; the source's per-partition watermarks leave the
// empty partition out after idleTimeout, so event-time windows fire (with
// idleTimeout 0 the empty partition would hold event time back and no
// window would ever fire).
func TestKafkaPartitionWatermarksIdlePartition(t *testing.T) {
	t.Parallel()
	broker := kafkaBroker(t, "in:2", "out:1")
	k := startKafkaCluster(t, 1)
	job := k.submit(fmt.Sprintf(`name: kafka-windows
parallelism: 1
operators:
  - id: src
    type: kafka
    config: {brokers: [%[1]q], topics: [in], watermarks: true, idleTimeout: 1s}
  - id: win
    type: window
    inputs: [src]
    keyBy: _key
    config: {size: 500ms}
  - id: sink
    type: kafka
    inputs: [win]
    config: {brokers: [%[1]q], topic: out, key: key}
`, broker))
	waitFor(t, 30*time.Second, "the job running", func() bool { _, ok := k.running(job); return ok })
	p := &kcatProducer{t: t}
	p.cmd = exec.Command("kcat", "-b", broker, "-t", "in", "-P", "-p", "0", "-K", "\t")
	in, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.in = in
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	if err := produceKeyed(p, 0, 600, 3, 200, want); err != nil { // 3 s of records, partition 0 only
		t.Fatal(err)
	}
	p.close()
	var lines []string
	waitFor(t, 30*time.Second, "windows fired", func() bool {
		lines = kcatReadCommitted(t, broker, "out")
		return len(lines) >= 3
	})
	for _, l := range lines {
		var w struct {
			Key        string
			Start, End int64
			Count      int64
		}
		if err := json.Unmarshal([]byte(l), &w); err != nil || w.Count < 1 || w.End <= w.Start || want[w.Key] == 0 {
			t.Fatalf("window output %q: %v", l, err)
		}
	}
}
