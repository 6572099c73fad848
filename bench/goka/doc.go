// Package goka compares Flow with github.com/lovoo/goka on the same keyed
// count (Kafka -> keyBy -> count -> Kafka) over the same in-process kfake
// broker. It is a module of its own so that Goka (and sarama) never become
// dependencies of Flow; run it with `make bench-goka` from the repository
// root. See docs/performance.md, "Flow against Goka".
package goka
