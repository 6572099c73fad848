// Package expression compiles and evaluates the small expressions job specs
// use (keyBy, filter conditions, map and select expressions, event-time
// timestamps). It wraps github.com/expr-lang/expr.
//
// Promises:
//   - An expression is compiled once (Compile, CompileBool); compile errors
//     quote the expression text.
//   - Evaluation sees the record's top-level JSON fields as variables, plus
//     `_ts` (the record's timestamp in ms, or nil when it has none) and `_key`
//     (the record's key as a string, or nil). JSON numbers that are integral
//     and fit in 53 bits are ints, others float64, so `seq % 2` works.
//   - An Env parses a record's JSON once and is reused across records and
//     across programs; a Program is not safe for concurrent use (each subtask
//     compiles its own), an Env neither.
//   - AppendKey renders an expression result as canonical key bytes: strings
//     as their bytes, numbers as decimal text, everything else as JSON.
package expression
