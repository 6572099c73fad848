package kafka_test

import (
	"os"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin"
	"github.com/flowrt/flow/pkg/jobspec"
)

// TestExampleSpec validates examples/kafka/keyed-count.yaml against a
// broker that has its topics (the example's brokers replaced), and checks
// that without a broker the submit-time check names the broker.
func TestExampleSpec(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "events", "counts"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := os.ReadFile("../../../examples/kafka/keyed-count.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec := strings.ReplaceAll(string(b), "localhost:9092", c.ListenAddrs()[0])
	if _, err := jobspec.Parse([]byte(spec), "keyed-count.yaml", api.Default, nil); err != nil {
		t.Fatalf("examples/kafka/keyed-count.yaml: %v", err)
	}
	spec = strings.ReplaceAll(string(b), "localhost:9092", "127.0.0.1:1")
	if _, err := jobspec.Parse([]byte(spec), "keyed-count.yaml", api.Default, nil); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("without a broker: %v, want the submit-time check to name 127.0.0.1:1", err)
	}
}

// TestTransactionTimeoutVsCheckpoints: an exactly_once sink whose
// transactionTimeout is not longer than checkpoint interval + timeout is
// refused with one line; at_least_once does not care.
func TestTransactionTimeoutVsCheckpoints(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in", "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	spec := func(guarantee, timeout string) []byte {
		return []byte(`name: tt
operators:
  - id: src
    type: kafka
    config: {brokers: ["` + c.ListenAddrs()[0] + `"], topics: [in]}
  - id: out
    type: kafka
    inputs: [src]
    config: {brokers: ["` + c.ListenAddrs()[0] + `"], topic: out, deliveryGuarantee: ` + guarantee + `, transactionTimeout: 1m}
checkpoints: {interval: 10s` + timeout + `}
`)
	}
	_, err = jobspec.Parse(spec("exactly_once", ""), "tt.yaml", api.Default, nil)
	if err == nil || !strings.Contains(err.Error(), "transactionTimeout") || !strings.Contains(err.Error(), "10s + 10m0s") || strings.Count(err.Error(), "\n") > 0 {
		t.Fatalf("transactionTimeout 1m with the default 10m checkpoint timeout: %v", err)
	}
	if _, err := jobspec.Parse(spec("exactly_once", ", timeout: 30s"), "tt.yaml", api.Default, nil); err != nil {
		t.Fatalf("transactionTimeout 1m > 10s + 30s: %v", err)
	}
	if _, err := jobspec.Parse(spec("at_least_once", ""), "tt.yaml", api.Default, nil); err != nil {
		t.Fatalf("at_least_once: %v", err)
	}
}
