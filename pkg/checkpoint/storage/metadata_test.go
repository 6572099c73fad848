package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

var writeGolden = flag.Bool("write-golden", false, "write missing golden fixtures under testdata/ (never overwrites)")

// goldenV1 is the content of testdata/v1/_metadata. Frozen: the fixture is
// committed and every later Flow must read it.
func goldenV1() *checkpointv1.CheckpointMetadata {
	return &checkpointv1.CheckpointMetadata{
		FormatVersion:    1,
		JobId:            "5f2c9a1e0b7d4c38",
		JobName:          "clicks-per-user",
		CheckpointId:     42,
		TriggerTimeMs:    1767225600000,
		CompletionTimeMs: 1767225601250,
		Graph: &jobgraphv1.JobGraph{
			Name: "clicks-per-user", Parallelism: 2, MaxParallelism: 128,
			Vertices: []*jobgraphv1.Vertex{
				{Id: "src", Type: "datagen", Uid: "src-uid", Parallelism: 1},
				{Id: "count", Type: "count", Uid: "count-uid", Parallelism: 2, KeyBy: "user"},
			},
			Edges: []*jobgraphv1.Edge{{Source: "src", Target: "count", Partitioning: jobgraphv1.Partitioning_PARTITIONING_HASH}},
		},
		Operators: []*checkpointv1.OperatorState{
			{
				Uid: "src-uid", OperatorId: "src", Type: "datagen", Parallelism: 1, MaxParallelism: 128,
				States: []*checkpointv1.StateDescriptor{{Name: "offsets", Kind: "operator_list", Codec: "int64", CodecVersion: 1}},
				Subtasks: []*checkpointv1.SubtaskState{{
					Subtask:        0,
					SourcePosition: []byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xa0},
					OperatorState: []*checkpointv1.OperatorStateHandle{{
						Name: "offsets", Mode: "split",
						File:    &checkpointv1.FileHandle{Path: "5f2c9a1e0b7d4c38/chk-42/src-uid-0-offsets", Size: 24},
						Offsets: []int64{0, 8, 16},
					}},
					StateSize: 24, UploadedSize: 24,
				}},
			},
			{
				Uid: "count-uid", OperatorId: "count", Type: "count", Parallelism: 2, MaxParallelism: 128,
				States: []*checkpointv1.StateDescriptor{
					{Name: "count", Kind: "value", Codec: "int64", CodecVersion: 1, Keyed: true},
					{Name: "timers", Kind: "timers", Codec: "timer", CodecVersion: 1, Keyed: true},
				},
				Subtasks: []*checkpointv1.SubtaskState{
					{
						Subtask: 0,
						Keyed: []*checkpointv1.KeyedStateHandle{{
							KeyGroupStart: 0, KeyGroupEnd: 63, Format: "pebble",
							Files: []*checkpointv1.FileHandle{
								{Path: "5f2c9a1e0b7d4c38/shared/count-uid-0-000007.sst", Size: 65536, Shared: true, LocalName: "000007.sst"},
								{Path: "5f2c9a1e0b7d4c38/shared/count-uid-0-000009.sst", Size: 4096, Shared: true, LocalName: "000009.sst"},
								{Path: "5f2c9a1e0b7d4c38/chk-42/count-uid-0-MANIFEST-000010", Size: 512, LocalName: "MANIFEST-000010"},
							},
						}},
						InFlight:  []*checkpointv1.InFlightHandle{{Channel: 1, File: &checkpointv1.FileHandle{Path: "5f2c9a1e0b7d4c38/chk-42/count-uid-0-inflight-1", Size: 300}}},
						StateSize: 70144, UploadedSize: 4908,
					},
					{
						Subtask: 1,
						Keyed: []*checkpointv1.KeyedStateHandle{{
							KeyGroupStart: 64, KeyGroupEnd: 127, Format: "heap",
							Files:           []*checkpointv1.FileHandle{{Path: "5f2c9a1e0b7d4c38/chk-42/count-uid-1-keyed", Size: 2048}},
							KeyGroupOffsets: []int64{0, 32, 64},
						}},
						StateSize: 2048, UploadedSize: 2048,
					},
				},
			},
		},
		Stats: &checkpointv1.CheckpointStats{StateSize: 72216, UploadedSize: 6980, DurationMs: 1250, MaxAlignmentMs: 12, MaxSyncMs: 3, MaxAsyncMs: 900},
	}
}

func TestGoldenV1(t *testing.T) {
	file := filepath.Join("testdata", "v1", MetadataFile)
	if *writeGolden {
		if _, err := os.Stat(file); err == nil {
			t.Fatalf("%s exists: golden fixtures are frozen, never rewritten", file)
		}
		b, err := EncodeMetadata(goldenV1())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(file), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, b, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read the frozen v1 fixture: %v", err)
	}
	if !bytes.HasPrefix(b, []byte("FLOWCKPT\x00\x00\x00\x01")) {
		t.Fatalf("fixture header %q", b[:12])
	}
	md, err := DecodeMetadata(b)
	if err != nil {
		t.Fatal(err)
	}
	// Field by field, so a renumbered or retyped field fails here even if
	// goldenV1 is (wrongly) edited along with it.
	if md.GetFormatVersion() != 1 || md.GetJobId() != "5f2c9a1e0b7d4c38" || md.GetJobName() != "clicks-per-user" ||
		md.GetCheckpointId() != 42 || md.GetTriggerTimeMs() != 1767225600000 || md.GetCompletionTimeMs() != 1767225601250 || md.GetSavepoint() {
		t.Fatalf("header fields: %v", md)
	}
	if g := md.GetGraph(); g.GetMaxParallelism() != 128 || len(g.GetVertices()) != 2 || g.GetVertices()[1].GetKeyBy() != "user" ||
		g.GetEdges()[0].GetPartitioning() != jobgraphv1.Partitioning_PARTITIONING_HASH {
		t.Fatalf("graph: %v", g)
	}
	if len(md.GetOperators()) != 2 || md.GetOperators()[1].GetUid() != "count-uid" || !md.GetOperators()[1].GetStates()[0].GetKeyed() {
		t.Fatalf("operators: %v", md.GetOperators())
	}
	src := md.GetOperators()[0].GetSubtasks()[0]
	if !bytes.Equal(src.GetSourcePosition(), []byte{0, 0, 0, 0, 0, 1, 0x86, 0xa0}) || src.GetOperatorState()[0].GetMode() != "split" ||
		len(src.GetOperatorState()[0].GetOffsets()) != 3 {
		t.Fatalf("source subtask: %v", src)
	}
	k := md.GetOperators()[1].GetSubtasks()[0].GetKeyed()[0]
	if k.GetKeyGroupEnd() != 63 || k.GetFormat() != "pebble" || !k.GetFiles()[0].GetShared() || k.GetFiles()[2].GetShared() ||
		k.GetFiles()[0].GetLocalName() != "000007.sst" || k.GetFiles()[0].GetSize() != 65536 {
		t.Fatalf("keyed handle: %v", k)
	}
	if in := md.GetOperators()[1].GetSubtasks()[0].GetInFlight(); len(in) != 1 || in[0].GetChannel() != 1 {
		t.Fatalf("in-flight: %v", in)
	}
	if s := md.GetStats(); s.GetDurationMs() != 1250 || s.GetMaxAsyncMs() != 900 {
		t.Fatalf("stats: %v", s)
	}
	if got := SharedFiles(md); len(got) != 2 || got[0] != "5f2c9a1e0b7d4c38/shared/count-uid-0-000007.sst" {
		t.Fatalf("shared files %v", got)
	}
	if !proto.Equal(md, goldenV1()) {
		t.Fatalf("decoded fixture differs from goldenV1()")
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	md := goldenV1()
	md.FormatVersion = 0 // written as the current version
	b, err := EncodeMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	if md.FormatVersion != 0 {
		t.Fatal("EncodeMetadata modified its argument")
	}
	got, err := DecodeMetadata(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetFormatVersion() != FormatVersion {
		t.Fatalf("format version %d", got.GetFormatVersion())
	}
	if !proto.Equal(got, goldenV1()) {
		t.Fatal("round trip changed the metadata")
	}
	// Layout: magic, version, length, payload, crc over all before it.
	if string(b[:8]) != Magic || binary.BigEndian.Uint32(b[8:]) != 1 || int(binary.BigEndian.Uint32(b[12:]))+20 != len(b) {
		t.Fatalf("frame header % x", b[:16])
	}
	if crc32.Checksum(b[:len(b)-4], crc32.MakeTable(crc32.Castagnoli)) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		t.Fatal("trailer is not the CRC32C of the preceding bytes")
	}
	if _, err := EncodeMetadata(nil); err == nil {
		t.Fatal("nil metadata encoded")
	}
	md.FormatVersion = FormatVersion + 1
	if _, err := EncodeMetadata(md); err == nil {
		t.Fatal("encoded a version newer than this build")
	}
}

// reframe builds a frame with the given version around payload, with a
// valid checksum.
func reframe(version uint32, payload []byte) []byte {
	b := append([]byte(Magic), 0, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[8:], version)
	binary.BigEndian.PutUint32(b[12:], uint32(len(payload)))
	b = append(b, payload...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

func TestDecodeErrors(t *testing.T) {
	good, err := EncodeMetadata(goldenV1())
	if err != nil {
		t.Fatal(err)
	}
	payload := good[16 : len(good)-4]
	flipped := bytes.Clone(good)
	flipped[40] ^= 0x10
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-1] ^= 1
	cases := []struct {
		name string
		in   []byte
		kind error
		msg  string
	}{
		{"empty", nil, ErrCorrupt, "truncated"},
		{"short magic", []byte("FLOW"), ErrCorrupt, "truncated"},
		{"not ours", []byte("PK\x03\x04 some zip file here"), ErrCorrupt, "bad magic"},
		{"header only", good[:14], ErrCorrupt, "truncated"},
		{"truncated payload", good[:len(good)-10], ErrCorrupt, "truncated"},
		{"no checksum", good[:len(good)-4], ErrCorrupt, "truncated"},
		{"trailing bytes", append(bytes.Clone(good), 0), ErrCorrupt, "after the checksum"},
		{"flipped bit", flipped, ErrCorrupt, "checksum mismatch"},
		{"bad checksum", badCRC, ErrCorrupt, "checksum mismatch"},
		{"version 0", reframe(0, payload), ErrCorrupt, "version 0"},
		{"version 2", reframe(2, payload), ErrNewerFormat, "written by a newer Flow (format v2); upgrade"},
		{"bad protobuf", reframe(1, []byte{0x0a, 0xff, 0xff}), ErrCorrupt, "protobuf"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeMetadata(c.in)
			if !errors.Is(err, c.kind) {
				t.Fatalf("error %v, want %v", err, c.kind)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %q does not say %q", err, c.msg)
			}
		})
	}
	// Every truncation is an error.
	for n := range len(good) {
		if _, err := DecodeMetadata(good[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
}

func FuzzDecodeMetadata(f *testing.F) {
	good, err := EncodeMetadata(goldenV1())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:20])
	f.Add(reframe(2, nil))
	f.Add(reframe(1, []byte{0x0a, 0xff}))
	f.Add([]byte("FLOWCKPT"))
	if golden, err := os.ReadFile(filepath.Join("testdata", "v1", MetadataFile)); err == nil {
		f.Add(golden)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		md, err := DecodeMetadata(b)
		if err != nil {
			var me *MetadataError
			if md != nil || !errors.As(err, &me) || (!errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNewerFormat)) {
				t.Fatalf("unclean error: md=%v err=%v", md, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		// A frame that decodes re-encodes to a frame that decodes to the same.
		again, err := EncodeMetadata(md)
		if err != nil {
			t.Fatal(err)
		}
		md2, err := DecodeMetadata(again)
		if err != nil || !proto.Equal(md, md2) {
			t.Fatalf("re-encode: %v", err)
		}
	})
}
