// Package exchange moves opaque frames from producer subtasks to consumer
// subtasks, within a TaskManager and between TaskManagers, with credit-based
// flow control. A frame is a []byte the runtime encodes (a batch of records
// or an in-band event such as a watermark, barrier or end marker); this
// package never looks inside.
//
// Model (as in Flink). A Manager runs per TaskManager. A producer subtask has
// one ResultPartition per downstream task vertex, with one subpartition (a
// FIFO queue) per downstream consumer channel. A consumer subtask has one
// InputGate over its input channels; channel i reads one subpartition of one
// upstream subtask, locally (same Manager: straight from the queue) or
// remotely (one ExchangeService.Subscribe gRPC stream per channel, to the
// producer's Manager, over one shared grpc.ClientConn per address).
//
// Promises:
//
//   - Every emitted frame is delivered exactly once, in order per channel,
//     followed by exactly one End per channel after Finish. The exception
//     is priority frames (EmitEvent with priority, for unaligned checkpoint
//     barriers): they overtake the frames queued before them, at the
//     producer and, on a gate with a SetPriority filter, in the consumer's
//     receive queue (Event.Overtaken counts the frames they passed); they
//     are sent without credit. Producers that emit priority frames need
//     consumers whose gates recognize them (SetPriority).
//   - Memory is bounded. A partition never has more than
//     subpartitions*BuffersPerChannel + FloatingBuffers buffers outstanding;
//     RequestBuffer blocks (backpressure) and TryRequestBuffer fails beyond
//     that. A remote consumer never holds more than BuffersPerChannel frames
//     per channel: the producer sends only against credit, the consumer
//     grants credit as it recycles frames (batched, half a window at a time).
//   - A local frame returns to the producer's pool when the consumer
//     recycles it; a remote frame returns to the pool once sent.
//   - Failures surface as Poll errors naming the channel's partition,
//     subpartition and address, wrapping ErrPartitionNotFound (not registered
//     within RegisterTimeout, or producer TaskManager unreachable),
//     ErrPartitionReleased, ErrProducerLost (stream broke, or silent for the
//     liveness timeout: idle producers send heartbeats every 2s, so a dead
//     TaskManager is detected within ~10s even without TCP resets) or
//     ErrProtocol. Poll errors are sticky.
//   - Poll is fair: channels with data are served round robin.
//   - No allocation per frame on the local path in steady state; no
//     goroutine per frame anywhere. Remotely, streams use the
//     "flow-exchange" gRPC codec (protobuf wire format): a batch of frames
//     is marshaled with one copy into a pooled gRPC buffer, and received
//     frames are copied once into buffers the channel recycles (at most
//     BuffersPerChannel per channel), so frame payloads are not allocated
//     per frame; gRPC's own per-message bookkeeping remains (a few small
//     objects per message, none per record). Goroutines: two per open remote channel
//     (receive, credit) on the consumer side, one per stream (credit reader)
//     besides the gRPC handler on the producer side; all exit when the gate
//     closes, the partition is released, the stream ends or the Manager closes.
//
// Threading: a ResultPartition's producing methods are used by one goroutine
// (Release may be called from any). An InputGate is used by one goroutine;
// only its Available channel is meant to be selected on elsewhere.
//
// Lifecycle: after Finish, wait for Consumed before Release, otherwise
// consumers that have not yet received their End get ErrPartitionReleased.
package exchange
