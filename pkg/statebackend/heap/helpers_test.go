package heap_test

import "github.com/flowrt/flow/pkg/keygroup"

func statebackendRange(start, end int) keygroup.Range { return keygroup.Range{Start: start, End: end} }
