package storage

import (
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/flowrt/flow/internal/blobfault"
)

// newFaulty registers a fresh in-memory fault-injecting store.
func newFaulty(t *testing.T) *blobfault.Store {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	st, err := blobfault.NewMem(fmt.Sprintf("storage-%x", b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}
