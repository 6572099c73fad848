package runtime

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/internal/expression"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/connectors/datagen"
	"github.com/flowrt/flow/pkg/keygroup"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// BenchmarkOutputHash measures the producer side of a keyBy edge per record:
// key extraction from the JSON value, key group, subpartition choice and
// frame encoding into a pooled buffer, with a local consumer goroutine
// recycling the emitted buffers. One op is one record; allocs/op must be 0.
func BenchmarkOutputHash(b *testing.B) {
	for _, subs := range []int{1, 4} {
		b.Run(map[int]string{1: "sub=1", 4: "sub=4"}[subs], func(b *testing.B) { benchOutputHash(b, subs) })
	}
}

func benchOutputHash(b *testing.B, subs int) {
	m, err := exchange.NewManager(exchange.Options{SelfAddress: "local"})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = m.Close() }()
	id := exchange.PartitionID{JobID: "bench", Task: "gen", DownstreamTask: "sink"}
	part, err := m.CreatePartition(id, subs)
	if err != nil {
		b.Fatal(err)
	}
	defer part.Release()
	specs := make([]exchange.ChannelSpec, subs)
	for i := range specs {
		specs[i] = exchange.ChannelSpec{Address: "local", Partition: id, Subpartition: int32(i)}
	}
	g, err := m.OpenInputGate(context.Background(), specs)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan int)
	go func() { // consumer: recycle every frame until all ended
		frames, ended := 0, 0
		for ended < subs {
			ev, ok, err := g.Poll()
			if err != nil {
				break
			}
			if !ok {
				<-g.Available()
				continue
			}
			if ev.End {
				ended++
				continue
			}
			frames++
			g.Recycle(ev.Channel, ev.Frame)
		}
		done <- frames
	}()

	metrics, err := newTaskMetrics(prometheus.NewRegistry(), "bench", "bench", "gen", 0, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	t := &task{ctx: context.Background(), metrics: metrics, flushInterval: time.Hour}
	o := newOutput(t, part, jobgraphv1.Partitioning_PARTITIONING_HASH, subs)
	prog, err := expression.Compile("key")
	if err != nil {
		b.Fatal(err)
	}
	o.keyBy, o.env, o.maxPar, o.downstream, o.keyTarget = prog, expression.NewEnv(), 128, subs, "sink"
	o.keyField, _ = prog.Field()

	// Pre-generate records so the loop measures the output only.
	const n = 4096
	vals := make([][]byte, n)
	for i := range vals {
		vals[i] = datagen.AppendRecord(nil, 0, 1000, int64(i), int64(i))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		o.Collect(api.Record{Value: vals[i], Timestamp: int64(i)})
		i = (i + 1) & (n - 1)
	}
	b.StopTimer()
	o.flush()
	if t.err != nil {
		b.Fatal(t.err)
	}
	if err := part.Finish(); err != nil {
		b.Fatal(err)
	}
	<-done
	_ = g.Close()
}

// TestSubpartitionOfMatchesKeyGroups: the routing table gives exactly the
// subtask keygroup.Assign + keygroup.OperatorIndex give, for power-of-two
// and other max parallelisms.
func TestSubpartitionOfMatchesKeyGroups(t *testing.T) {
	for _, maxPar := range []int{1, 2, 7, 128, 1000, 1 << 15} {
		for _, down := range []int{1, 3, 4, 7} {
			if down > maxPar {
				continue
			}
			o := &output{maxPar: maxPar, downstream: down}
			for i := 0; i < 2000; i++ {
				key := datagen.AppendRecord(nil, int64(maxPar), int64(i+1), int64(i), 0)[:8+i%40]
				want := keygroup.OperatorIndex(keygroup.Assign(key, maxPar), maxPar, down)
				if got := o.subpartitionOf(key); got != want {
					t.Fatalf("maxPar %d, downstream %d, key %q: subpartition %d, want %d", maxPar, down, key, got, want)
				}
			}
		}
	}
}

// TestLeadingStringKeyMatchesAppendFieldKey: whenever the leading-field fast
// path answers, it answers what the general field extraction does.
func TestLeadingStringKeyMatchesAppendFieldKey(t *testing.T) {
	values := []string{
		`{"key":"k1","seq":1}`,
		`{"key":"","x":1}`,
		`{"key":"a\"b"}`,
		`{"key":"a\\b"}`,
		`{"key":"unterminated`,
		`{"key":"k1"`,
		`{"key":"k1"}`,
		`{"key":12,"x":"y"}`,
		`{ "key":"spaced"}`,
		`{"keys":"other","key":"k2"}`,
		`{"key":"é ü"}`,
		`{"key":"tab	inside"}`,
		`{"key"`,
		`{"key":"`,
		``,
		`[]`,
	}
	for i := 0; i < 200; i++ {
		values = append(values, string(datagen.AppendRecord(nil, int64(i), 1000, int64(i), int64(i))))
	}
	for _, field := range []string{"key", "ke", "a\"b", ""} {
		o := &output{keyField: field}
		for _, v := range values {
			got, ok := o.leadingStringKey([]byte(v))
			if !ok {
				continue
			}
			want, wok := expression.AppendFieldKey(nil, []byte(v), field)
			if !wok || string(got) != string(want) {
				t.Fatalf("field %q, value %q: fast path %q, AppendFieldKey %q (ok=%v)", field, v, got, want, wok)
			}
		}
	}
	o := &output{keyField: "key"}
	if k, ok := o.leadingStringKey([]byte(`{"key":"k7","seq":3}`)); !ok || string(k) != "k7" {
		t.Fatalf("fast path missed a leading string key: %q %v", k, ok)
	}
}
