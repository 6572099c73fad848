package exchange

import (
	"context"
	"testing"
)

const benchFrameSize = 32 << 10

// benchExchange streams b.N frames of 32 KiB through one channel.
func benchExchange(b *testing.B, remote bool) {
	opts := Options{BufferSize: benchFrameSize}
	prod := newManager(b, opts)
	serve(b, prod)
	cons := prod
	if remote {
		cons = newManager(b, opts)
		serve(b, cons)
	}
	p, err := prod.CreatePartition(pid("bench", 0), 1)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Release()
	g, err := cons.OpenInputGate(context.Background(), []ChannelSpec{{Address: addr(prod), Partition: pid("bench", 0)}})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()

	b.SetBytes(benchFrameSize)
	b.ReportAllocs()
	b.ResetTimer()
	errc := make(chan error, 1)
	go func() {
		ctx := context.Background()
		for i := 0; i < b.N; i++ {
			buf, err := p.RequestBuffer(ctx)
			if err != nil {
				errc <- err
				return
			}
			buf = buf[:benchFrameSize]
			buf[0] = byte(i)
			if err := p.Emit(0, buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- p.Finish()
	}()
	frames := 0
	for {
		ev, ok, err := g.Poll()
		if err != nil {
			b.Fatal(err)
		}
		if !ok {
			<-g.Available()
			continue
		}
		if ev.End {
			break
		}
		frames++
		g.Recycle(ev.Channel, ev.Frame)
	}
	b.StopTimer()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	if frames != b.N {
		b.Fatalf("received %d frames, want %d", frames, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

func BenchmarkLocal(b *testing.B)  { benchExchange(b, false) }
func BenchmarkRemote(b *testing.B) { benchExchange(b, true) }
