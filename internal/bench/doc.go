// Package bench holds Flow's checkpoint and recovery benchmarks (issue
// "Checkpoints and recovery"); it has no non-test code. They run only with
// -bench, never under plain `go test`:
//
//   - BenchmarkCheckpointOverhead: a keyed job on the mini cluster with 1 s
//     checkpoints against the same job without checkpoints, interleaved in
//     one run; reports both rates and their ratio.
//   - BenchmarkCheckpointDuration: checkpoint duration p50/p99 and bytes
//     uploaded per checkpoint against keyed state size (heap, Pebble full,
//     Pebble incremental).
//   - BenchmarkRecovery: real JobManager and TaskManager processes; a
//     TaskManager holding large keyed state is SIGKILLed and the time to
//     processing resumed is split into detection, restart delay, deployment
//     and restore, against a raw copy of the same checkpoint bytes.
//
// Every figure is reported next to a baseline measured in the same run.
// The commands and the results are in docs/performance.md ("Checkpoints and
// recovery"). The benchmarks register two test-only operator types
// (benchgen, bigstate) in their own registry; the process benchmarks run the
// stock daemon commands (internal/daemon) with that registry by re-executing
// the test binary.
package bench
