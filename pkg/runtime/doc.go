// Package runtime runs job graphs: it chains operators into tasks (BuildPlan),
// and runs each subtask in one goroutine that owns its operators and state,
// with a mailbox loop over input batches, timers and control messages.
package runtime
