package ha

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFileElectionOneLeaderAndGrowingEpochs(t *testing.T) {
	dir := t.TempDir()
	a := NewFileElection(dir, 10*time.Millisecond)
	ta, err := a.Campaign(context.Background(), "jm-a")
	if err != nil {
		t.Fatal(err)
	}
	if ta.Epoch != 1 {
		t.Fatalf("first term's epoch %d, want 1", ta.Epoch)
	}
	if err := ta.Publish("127.0.0.1:6123"); err != nil {
		t.Fatal(err)
	}

	// A standby waits while a leads, and is told who does.
	b := NewFileElection(dir, 10*time.Millisecond)
	var waited error
	b.Waiting = func(err error) { waited = err }
	won := make(chan *Term, 1)
	go func() {
		tb, err := b.Campaign(context.Background(), "jm-b")
		if err != nil {
			t.Error(err)
		}
		won <- tb
	}()
	select {
	case <-won:
		t.Fatal("a second contender leads while the first holds its term")
	case <-time.After(100 * time.Millisecond):
	}
	info, ok, err := b.Leader()
	if err != nil || !ok || info.ID != "jm-a" || info.Epoch != 1 || info.Address != "127.0.0.1:6123" || info.PID != os.Getpid() {
		t.Fatalf("Leader while a leads: %+v, %v, %v", info, ok, err)
	}
	if err := ta.Resign(); err != nil {
		t.Fatal(err)
	}
	var tb *Term
	select {
	case tb = <-won:
	case <-time.After(5 * time.Second):
		t.Fatal("the standby did not take over after the leader resigned")
	}
	if tb.Epoch != 2 {
		t.Fatalf("second term's epoch %d, want 2", tb.Epoch)
	}
	if waited == nil || !strings.Contains(waited.Error(), "in use") {
		t.Fatalf("the standby was not told who holds the lead: %v", waited)
	}

	// A campaign gives up when its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := NewFileElection(dir, 10*time.Millisecond).Campaign(ctx, "jm-c"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("campaign under a held lead with an ended context: %v", err)
	}
	// TryCampaign fails at once while another leads.
	if _, err := NewFileElection(dir, 0).TryCampaign("jm-c"); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("TryCampaign under a held lead: %v, want the data dir's in-use error", err)
	}
	tb.Resign()

	// A restarted JobManager (a new election on the dir) continues above.
	tc, err := NewFileElection(dir, 0).Campaign(context.Background(), "jm-c")
	if err != nil || tc.Epoch != 3 {
		t.Fatalf("third term: %+v, %v; want epoch 3", tc, err)
	}
	tc.Resign()
}

func TestFileElectionCorruptEpoch(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "ha"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "ha", "leader-epoch")
	if err := os.WriteFile(p, []byte("seven\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := NewFileElection(dir, 0)
	_, err := e.Campaign(context.Background(), "jm-a")
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "is corrupt") {
		t.Fatalf("campaign over a corrupt epoch file: %v; want an error naming %s", err, p)
	}
	// The failed campaign released the lock: fixing the file is enough.
	if err := os.WriteFile(p, []byte("41\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	term, err := e.Campaign(context.Background(), "jm-a")
	if err != nil || term.Epoch != 42 {
		t.Fatalf("campaign after the fix: %+v, %v; want epoch 42", term, err)
	}
	term.Resign()
	if err := os.WriteFile(filepath.Join(dir, "ha", "leader"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Leader(); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Leader over a corrupt file: %v", err)
	}
}
