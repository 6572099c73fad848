// Package statebackendtest is the conformance suite every keyed state
// backend must pass: Run exercises each state kind, namespaces, TTL modes
// under a fake clock, timers, many keys across key groups, canonical
// iteration and ingest, clearing, redeclaration and decode errors, and
// codec versioning. The heap and pebble backends run it in their tests; a
// new backend should too.
package statebackendtest
