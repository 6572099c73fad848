// Package api is Flow's public SDK: the interfaces user code implements
// (sources, operators, sinks) and the registry through which operator types
// are made available to job specs by name.
//
// Contract with the runtime:
//   - Every method of a Source, Operator or Sink instance is called from one
//     goroutine (the subtask's), so user functions need no locks.
//   - Records passed to user code are only valid during the call; the byte
//     slices may be reused afterwards. Copy what you keep.
//   - Records passed to a Collector are copied before Collect returns, so the
//     caller may reuse its buffers.
//   - Built-in operators use nothing but this package.
package api
