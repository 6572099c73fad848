package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

const kafkaCheckJob = `name: kafka-check
parallelism: 2
operators:
  - {id: src, type: kafka, uid: src-v1, config: {brokers: [%q], topics: [%s]}}
  - {id: sink, type: blackhole, inputs: [src]}
`

type kafkaCheckJSON struct {
	Compatible bool `json:"compatible"`
	Sources    []struct {
		UID    string `json:"uid"`
		Type   string `json:"type"`
		Now    string `json:"now"`
		Topics []struct {
			Topic      string `json:"topic"`
			Known      int32  `json:"knownPartitions"`
			Partitions []struct {
				Partition int32 `json:"partition"`
				Offset    int64 `json:"offset"`
			} `json:"partitions"`
		} `json:"topics"`
		Removed []string `json:"removed"`
		Added   []string `json:"added"`
	} `json:"sources"`
}

// offsets sums the restored offsets per topic of the first source.
func (r *kafkaCheckJSON) offsets() map[string]int64 {
	out := map[string]int64{}
	if len(r.Sources) == 0 {
		return out
	}
	for _, tp := range r.Sources[0].Topics {
		for _, p := range tp.Partitions {
			out[tp.Topic] += p.Offset
		}
	}
	return out
}

// TestSavepointCheckKafka: a savepoint of a job reading Kafka topics a
// (2 partitions) and b (1) on a mini cluster; `savepoint check` shows the
// source's topics, partitions and offsets (text and -o json, on the
// JobManager and --local), refuses a spec without b (exit 2, naming b and
// --allow-non-restored-state), accepts it with the flag and accepts a
// superset, listing the added topic.
func TestSavepointCheckKafka(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "a"), kfake.SeedTopics(1, "b", "c"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	addr := kc.ListenAddrs()[0]
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var rs []*kgo.Record
	for i := 0; i < 30; i++ {
		rs = append(rs, &kgo.Record{Topic: "a", Key: fmt.Appendf(nil, "k%d", i), Value: []byte(`{}`)})
	}
	for i := 0; i < 10; i++ {
		rs = append(rs, &kgo.Record{Topic: "b", Value: []byte(`{}`)})
	}
	if err := prod.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	c := startCluster(t)
	env := map[string]string{EnvJobManager: c.JobManagerAddress()}
	both := writeSpec(t, fmt.Sprintf(kafkaCheckJob, addr, "a, b"))
	onlyA := writeSpec(t, fmt.Sprintf(kafkaCheckJob, addr, "a"))
	superset := writeSpec(t, fmt.Sprintf(kafkaCheckJob, addr, "a, b, c"))
	r := flowctl(t, env, "run", both, "--detach")
	if r.code != 0 {
		t.Fatalf("run: exit %d: %s", r.code, r.stderr)
	}
	id := strings.TrimSuffix(r.stdout, "\n")
	waitFor(t, func() bool {
		return regexp.MustCompile(`(?m)^` + id + `\s+kafka-check\s+RUNNING`).MatchString(flowctl(t, env, "list").stdout)
	}, "job RUNNING")
	// Savepoints until one holds every record read.
	dir := t.TempDir()
	var sp string
	waitFor(t, func() bool {
		r = flowctl(t, env, "savepoint", "trigger", id, "--dir", dir)
		if r.code != 0 {
			t.Fatalf("trigger: exit %d: %s", r.code, r.stderr)
		}
		sp = strings.TrimSuffix(r.stdout, "\n")
		r = flowctl(t, env, "savepoint", "check", both, sp, "-o", "json")
		var rep kafkaCheckJSON
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 {
			t.Fatalf("check the job's own savepoint: exit %d, %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
		}
		o := rep.offsets()
		return o["a"] == 30 && o["b"] == 10
	}, "a savepoint at offsets a 30, b 10")
	flowctl(t, env, "cancel", id)

	for _, mode := range []struct {
		name string
		env  map[string]string
		args []string
	}{{"jobmanager", env, nil}, {"local", nil, []string{"--local"}}} {
		t.Run(mode.name, func(t *testing.T) {
			args := func(a ...string) []string { return append(append([]string{"savepoint", "check"}, a...), mode.args...) }
			r := flowctl(t, mode.env, args(onlyA, sp)...)
			if r.code != ExitIncompatible {
				t.Fatalf("spec without b: exit %d, want %d\n%s\n%s", r.code, ExitIncompatible, r.stdout, r.stderr)
			}
			for _, re := range []string{
				`(?m)^error\s+operator src-v1 \(kafka\): the snapshot holds offsets of topic\(s\) b that its config no longer reads \(it now reads topics \[a\]\): list them again, or pass --allow-non-restored-state to drop those offsets$`,
				`(?m)^info\s+operator src-v1 \(kafka\) restores topic a: 2 partition\(s\) 0@\d+ 1@\d+; topic b: 1 partition\(s\) 0@10$`,
				`(?m)^sources:\n  src-v1 \(kafka\): reads topics \[a\]\n    TOPIC\s+PARTITION\s+OFFSET\s+SUBTASK\s*\n`,
				`(?m)^    a\s+0\s+\d+\s+[01]\s*$`,
				`(?m)^    a\s+1\s+\d+\s+[01]\s*$`,
				`(?m)^    b\s+0\s+10\s+[01]\s+no longer read$`,
			} {
				if !regexp.MustCompile(re).MatchString(r.stdout) {
					t.Errorf("output does not match %s:\n%s", re, r.stdout)
				}
			}
			r = flowctl(t, mode.env, args(onlyA, sp, "-o", "json")...)
			var rep kafkaCheckJSON
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != ExitIncompatible || rep.Compatible || len(rep.Sources) != 1 {
				t.Fatalf("-o json: exit %d, %v\n%s", r.code, err, r.stdout)
			}
			s := rep.Sources[0]
			if s.UID != "src-v1" || s.Type != "kafka" || s.Now != "topics [a]" || strings.Join(s.Removed, ",") != "b" || len(s.Added) != 0 ||
				len(s.Topics) != 2 || s.Topics[0].Topic != "a" || len(s.Topics[0].Partitions) != 2 || s.Topics[0].Known != 2 || rep.offsets()["a"] != 30 {
				t.Fatalf("-o json sources: %+v", rep.Sources)
			}

			r = flowctl(t, mode.env, args(onlyA, sp, "--allow-non-restored-state")...)
			if r.code != 0 || !regexp.MustCompile(`(?m)^warning\s+operator src-v1 \(kafka\): the offsets of topic\(s\) b are dropped \(--allow-non-restored-state\)`).MatchString(r.stdout) {
				t.Fatalf("--allow-non-restored-state: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			r = flowctl(t, mode.env, args(superset, sp)...)
			if r.code != 0 || !regexp.MustCompile(`(?m)^    c\s+-\s+-\s+-\s+new: no offsets in the snapshot$`).MatchString(r.stdout) ||
				!strings.Contains(r.stdout, "topic(s) c have no offsets in the snapshot") {
				t.Fatalf("a superset of the topics: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}
