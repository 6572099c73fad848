package statebackend_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Pebble starts background goroutines; they must all stop on Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
