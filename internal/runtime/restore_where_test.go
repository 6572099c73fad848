package runtime

import (
	"strings"
	"testing"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// A restore error names the checkpoint as one URL: the storage base and the
// checkpoint's directory joined by a slash (a query stays at the end).
func TestRestoreErrorNamesCheckpointURL(t *testing.T) {
	for base, want := range map[string]string{
		"file:///tmp/flow-checkpoints":      "(file:///tmp/flow-checkpoints/8796ab/chk-6)",
		"file:///tmp/flow-checkpoints/":     "(file:///tmp/flow-checkpoints/8796ab/chk-6)",
		"s3://bucket/ckpt?region=eu-west-1": "(s3://bucket/ckpt/8796ab/chk-6?region=eu-west-1)",
	} {
		tk := &task{d: &clusterv1.TaskDeployment{Restore: &clusterv1.TaskRestore{CheckpointId: 6, StorageBase: base, Location: "8796ab/chk-6"}}}
		if err := tk.prepareRestore(); err != nil {
			t.Fatal(err)
		}
		if msg := tk.restore.errorf("boom").Error(); !strings.Contains(msg, want) {
			t.Errorf("base %s: error %q, want it to name %s", base, msg, want)
		}
	}
}
