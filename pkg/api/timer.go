package api

import "fmt"

// TimeDomain says which clock a timer follows.
type TimeDomain uint8

const (
	// EventTime timers fire when the watermark reaches their timestamp.
	EventTime TimeDomain = 0
	// ProcessingTime timers fire when the processing-time clock does.
	ProcessingTime TimeDomain = 1
)

func (d TimeDomain) String() string {
	switch d {
	case EventTime:
		return "event-time"
	case ProcessingTime:
		return "processing-time"
	}
	return fmt.Sprintf("TimeDomain(%d)", uint8(d))
}

// Timer is a registered timer: it belongs to a key and namespace. Key and
// Namespace are valid during the OnTimer call only.
type Timer struct {
	Domain    TimeDomain
	Timestamp int64
	Key       []byte
	KeyGroup  int
	Namespace []byte
}

// TimerService registers timers for the current key. A timer is identified
// by (domain, timestamp, key, namespace): registering it again is a no-op,
// deleting an absent timer is a no-op. Timestamps are milliseconds (event
// time, or Unix milliseconds for processing time).
//
// Timers fire in timestamp order, each with its key current, through the
// operator's TimerHandler. An event-time timer fires once the watermark is
// >= its timestamp; a processing-time timer once processing time is.
type TimerService interface {
	RegisterEventTimeTimer(ts int64, namespace []byte) error
	DeleteEventTimeTimer(ts int64, namespace []byte) error
	RegisterProcessingTimeTimer(ts int64, namespace []byte) error
	DeleteProcessingTimeTimer(ts int64, namespace []byte) error
	// CurrentWatermark is the last watermark the operator saw
	// (math.MinInt64 before the first).
	CurrentWatermark() int64
	// CurrentProcessingTime is processing time in Unix milliseconds.
	CurrentProcessingTime() int64
}

// TimerHandler is implemented by keyed operators that register timers. The
// timer's key is current while OnTimer runs, so state accesses see it.
type TimerHandler interface {
	OnTimer(t Timer, out Collector) error
}
