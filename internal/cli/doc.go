// Package cli implements flowctl, Flow's command-line client: it validates
// job specs locally, submits them to a JobManager over gRPC
// (JobManagerService), follows and inspects jobs, lists TaskManagers and
// operator types, and runs jobs on an in-process mini cluster (flowctl local).
//
// Promises:
//   - Errors are printed as one clear line (spec errors: one line per
//     problem, each located in the file) with the fix; usage is printed only
//     for usage mistakes, never for runtime errors.
//   - gRPC status codes are turned into messages in one place (rpcError).
//   - Exit codes: 0 success (a run that FINISHED); 1 a runtime error (such as
//     an unreachable JobManager or an unknown job); 2 bad usage or an invalid
//     job spec; 3 the job FAILED; 4 the job was CANCELED.
package cli
