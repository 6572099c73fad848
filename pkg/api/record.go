package api

import "math"

// NoTimestamp marks a record that carries no event time.
const NoTimestamp int64 = math.MinInt64

// MaxWatermark is the watermark emitted when an input ends: event time
// advances to the end.
const MaxWatermark int64 = math.MaxInt64

// Record is one element of a stream. Values are JSON documents; Key holds the
// bytes of the keyBy expression's result on keyed streams (nil otherwise);
// Timestamp is event time in milliseconds since the epoch, or NoTimestamp.
type Record struct {
	Key       []byte
	Value     []byte
	Timestamp int64
}

// Collector receives records emitted by a source or operator. The record's
// bytes are copied before Collect returns.
type Collector interface {
	Collect(r Record)
}
