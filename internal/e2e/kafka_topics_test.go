package e2e

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// produceOther writes n records to topic with kcat, keyed y<i mod keys>
// (apart from produceKeyed's k keys), and counts them into want.
func produceOther(t *testing.T, broker, topic string, from, to, keys int, want map[string]int64) {
	t.Helper()
	p := startKcatProducer(t, broker, topic)
	var b strings.Builder
	for n := from; n < to; n++ {
		k := fmt.Sprintf("y%d", n%keys)
		fmt.Fprintf(&b, "%s\t{\"n\":%d}\n", k, n)
		if want != nil {
			want[k]++
		}
	}
	if err := p.write(b.String()); err != nil {
		t.Fatal(err)
	}
	p.close()
}

// TestKafkaSavepointTopicRemoved stops a job reading topics in and in2
// (kafka -> count -> kafka exactly_once) with a savepoint; `flowctl
// savepoint check` of the spec without in2 exits 2 naming in2 in its
// sources section; `flowctl run --from-savepoint` of that spec is refused
// with one line naming the operator, in2 and --allow-non-restored-state;
// with the flag the job runs, in continues exactly at its offsets and
// in2's records produced since are not read: a read_committed kcat
// consumer sees for every key the counts 1..N exactly once (in2's keys
// stop at their counts before the savepoint).
func TestKafkaSavepointTopicRemoved(t *testing.T) {
	t.Parallel()
	const keys = 20
	broker := kafkaBroker(t, "in:2", "in2:2", "out:2")
	k := startKafkaCluster(t, 1)
	ck := "file://" + filepath.ToSlash(filepath.Join(k.dir, "checkpoints"))
	onlyIn := fmt.Sprintf(kafkaCountSpec, "heap", 2, broker, "exactly_once", ck)
	both := strings.Replace(onlyIn, "topics: [in]", "topics: [in, in2]", 1)
	if both == onlyIn {
		t.Fatal("kafkaCountSpec has no `topics: [in]` to replace")
	}
	job := k.submit(both)
	waitFor(t, 30*time.Second, "the job running", func() bool { _, ok := k.running(job); return ok })
	want := map[string]int64{}
	prod := startKcatProducer(t, broker, "in")
	if err := produceKeyed(prod, 0, 2000, keys, 4000, want); err != nil {
		t.Fatal(err)
	}
	prod.close()
	produceOther(t, broker, "in2", 0, 500, keys, want)
	awaitOutput(t, broker, "out", 2500, 40*time.Second)
	sp, stderr, err := flowctlStdout(t, k.jm, "stop", job, "--savepoint-dir", filepath.Join(k.dir, "sp"))
	if err != nil {
		t.Fatalf("flowctl stop: %v\n%s", err, stderr)
	}
	sp = strings.TrimSpace(sp)

	specPath := filepath.Join(k.dir, "only-in.yaml")
	writeFile(t, specPath, onlyIn)
	out, stderr, err := flowctlStdout(t, k.jm, "savepoint", "check", specPath, sp)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !regexp.MustCompile(`(?m)^    in2\s+[01]\s+\d+\s+[01]\s+no longer read$`).MatchString(out) ||
		!strings.Contains(out, "offsets of topic(s) in2 that its config no longer reads") {
		t.Fatalf("savepoint check without in2: %v, want exit 2 with in2 no longer read\n%s\n%s", err, out, stderr)
	}
	o, err := flowctl(t, k.jm, "run", "-d", "--from-savepoint", sp, specPath)
	if err == nil || !strings.Contains(o, "src-v1 (kafka)") || !strings.Contains(o, "topic(s) in2 ") || !strings.Contains(o, "--allow-non-restored-state") {
		t.Fatalf("run --from-savepoint without in2: %v, want a refusal naming src-v1, in2 and --allow-non-restored-state\n%s", err, o)
	}

	// in2's new records must not be counted; in's must, exactly once.
	produceOther(t, broker, "in2", 500, 800, keys, nil)
	prod = startKcatProducer(t, broker, "in")
	if err := produceKeyed(prod, 2000, 3000, keys, 4000, want); err != nil {
		t.Fatal(err)
	}
	prod.close()
	job2 := k.submit(onlyIn, "--from-savepoint", sp, "--allow-non-restored-state")
	waitFor(t, 30*time.Second, "the restored job running", func() bool { _, ok := k.running(job2); return ok })
	lines := awaitOutput(t, broker, "out", 3500, 40*time.Second)
	checkKafkaCounts(t, lines, want, false)
}
