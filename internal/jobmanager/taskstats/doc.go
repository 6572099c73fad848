// Package taskstats is the JobManager's read model of how each task vertex
// of a job is doing: busy, idle and backpressured ratios with Flink's
// backpressure level, records/s in and out, and the watermark, per subtask
// and per vertex.
//
// TaskManagers send a sample of every running subtask's cumulative
// counters with each heartbeat (clusterv1.TaskSample); Add keeps the
// samples of a job's newest attempt that fall in the window (plus the one
// just before it, the baseline), and Vertices computes the view from the
// difference between the newest sample and the baseline. A subtask with a
// single sample is measured from its start. The ratios are of the
// subtask's own published wall time (busy + idle + backpressured), so they
// do not depend on when the heartbeats arrive.
//
// Stats has its own lock, held only to copy or append samples: a heartbeat
// never waits for a reader, and no job master is involved.
package taskstats
