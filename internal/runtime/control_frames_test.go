package runtime

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/pkg/api"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

func TestControlFramesRoundTrip(t *testing.T) {
	opts := &clusterv1.CheckpointOptions{Location: "job/chk-7", StorageBase: "file:///ck", Unaligned: true, Incremental: true}
	ob, err := proto.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	buf := appendBarrier(nil, 7, 1234, barrierUnaligned|barrierSavepoint, ob)
	if !isControlFrame(buf) || !isPriorityFrame(buf) {
		t.Fatalf("barrier not recognized as a priority control frame: %x", buf)
	}
	b, err := decodeControl(buf)
	if err != nil {
		t.Fatal(err)
	}
	if b.cancel || b.id != 7 || b.timestampMs != 1234 || !b.unaligned() || !b.savepoint() || b.atLeastOnce() || !proto.Equal(b.opts, opts) {
		t.Fatalf("decoded %+v", b)
	}
	aligned := appendBarrier(nil, 8, 1, 0, ob)
	if isPriorityFrame(aligned) {
		t.Fatal("an aligned barrier is a priority frame")
	}
	c := appendCancel(nil, 9)
	if !isControlFrame(c) || isPriorityFrame(c) {
		t.Fatal("cancellation marker misclassified")
	}
	if b, err := decodeControl(c); err != nil || !b.cancel || b.id != 9 {
		t.Fatalf("cancel decoded %+v, %v", b, err)
	}
	// Every truncation is an error, never a panic; id 0 is invalid.
	for cut := 0; cut < len(buf); cut++ {
		if _, err := decodeControl(buf[:cut]); !errors.Is(err, ErrCorruptFrame) {
			t.Fatalf("truncated at %d: err = %v", cut, err)
		}
	}
	if _, err := decodeControl(appendCancel(nil, 0)); !errors.Is(err, ErrCorruptFrame) {
		t.Fatalf("id 0: err = %v", err)
	}
	// A control frame inside a data buffer is rejected by the record reader.
	var w frameWriter
	w.reset(nil)
	w.buf = append(w.buf, buf...)
	var rd frameReader
	rd.reset(w.buf)
	if _, _, _, err := rd.next(new(api.Record)); !errors.Is(err, ErrCorruptFrame) {
		t.Fatalf("barrier in data buffer: err = %v", err)
	}
}

func TestInFlightFileRoundTrip(t *testing.T) {
	body := appendInFlight(nil, 0, 0, []byte("frame-a"))
	body = appendInFlight(body, 2, 5, []byte("frame-b"))
	data := encodeInFlightFile(body)
	ents, err := decodeInFlightFile(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2 || string(ents[0].buf) != "frame-a" || ents[1].output != 2 || ents[1].sub != 5 || string(ents[1].buf) != "frame-b" {
		t.Fatalf("entries %+v", ents)
	}
	data[len(inFlightMagic)+3] ^= 1
	if _, err := decodeInFlightFile(data); !errors.Is(err, errCorruptInFlight) {
		t.Fatalf("corrupt file: err = %v", err)
	}
}
