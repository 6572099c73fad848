// Package typed is Flow's typed operator API: keyed process functions on Go
// values instead of []byte records.
//
// A KeyedProcessFunction[IN, OUT] receives each record decoded into IN (by
// the definition's input codec, JSON unless told otherwise) together with a
// per-record *Context[OUT]: the record's timestamp, the current key, the
// timer service and Emit, which encodes an OUT (output codec, JSON by
// default) into a reused buffer. Embed Base for the no-op Open, Finish and
// Close; declare state in Open with Value, List and Map (typed handles with
// default codecs and TTL options over the api state).
//
// Two inputs: a KeyedCoProcessFunction[IN1, IN2, OUT] (CoType) receives two
// keyed streams connected by one key (ProcessElement1, ProcessElement2, the
// same Context, state and timers); a KeyedBroadcastProcessFunction[IN, BC,
// OUT] (BroadcastType) receives a keyed stream and a broadcast one, whose
// records update a BroadcastState on every subtask in
// ProcessBroadcastElement: its writes take the *BroadcastContext, so the
// keyed side can only read it.
//
// Sinks: a SinkFunction[IN] (SinkType, RegisterSink) writes each record
// decoded into IN, with its timestamp and key in a reused *SinkContext;
// checkpoint hooks it implements (api.CheckpointedFunction,
// api.CheckpointListener) are forwarded to the runtime.
//
// Sources: a SourceFunction[OUT, SPLIT] (SourceType, RegisterSource)
// emits values into a reused *SourceContext and keeps its progress in
// splits of type SPLIT, which checkpoints store (JSON by default): a job
// resumes every split where it was, at the same or another parallelism
// (SplitDivider cuts splits when there are fewer than subtasks).
//
// Capabilities are declared with the type, not discovered while it runs:
//
//   - OnTimer is an optional method (TimerFunction). A function with OnTimer
//     whose Definition declares no timers, or declared timers without
//     OnTimer, is refused when a job using it is built or submitted (the
//     runtime builds every operator there). This is why Base has no
//     OnTimer: its presence is what the check sees.
//   - Capabilities.EventTimers and EventTime refuse a job in which some
//     source upstream of the operator assigns no watermarks.
//   - Timers of a domain the type does not declare fail to register, with
//     an error naming the capability.
//   - Side outputs are declared by name (Capabilities.SideOutputs, the
//     type's api.OperatorType.SideOutputs) and emitted with an OutputTag.
//     A job reads each as an input of its own (`inputs: [split.late]` in a
//     spec, Op.SideOutput in jobbuilder), which receives only that side
//     output's records; the main output's consumers never see them. A job
//     reading a side output the type does not declare is refused when it
//     is built.
//
// Decode errors of input records are record errors that name the type and
// the codec: with onError: skip the runtime drops the record and counts it,
// otherwise the task fails with the message.
//
// Hot path: one Context per operator instance, reused for every record and
// timer; Emit encodes into a buffer the operator reuses, and Collect copies
// it. Per record, only the codecs allocate (JSON decoding into IN; the JSON
// encoder boxes OUT). A custom Codec avoids both.
package typed
