// Package restart holds the job restart strategies (fixed delay, failure
// rate, exponential delay with jitter and reset, none), built from a job
// graph's RestartConfig. A Strategy is pure: the failure's time and the
// randomness of the jitter are inputs, so the lifecycle machine
// (internal/jobmanager/lifecycle) that consults it stays deterministic.
package restart
