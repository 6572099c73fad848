// Package taskmanager is the worker daemon's core: it registers its slots
// with a JobManager, heartbeats, re-registers when the JobManager restarts,
// runs the subtasks deployed to it (one goroutine each, through
// runtime.RunTask), reports their states, serves the data exchange, and on
// shutdown cancels its tasks and deregisters.
package taskmanager
