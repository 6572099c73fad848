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
//     EvalKey evaluates a keyBy expression into key bytes and refuses a null
//     result (ErrNullKey): a record whose key field is missing or null is a
//     record error, never keyed under "null". AppendFieldKey is its
//     no-decoding fast path for a plain field and leaves missing and null
//     fields to it.
//   - Evaluation errors are one line: the quoted expression, then, when a
//     top-level field the expression reads (Fields, known at compile time) is
//     missing or null in the record, those fields and the fields the record
//     has (wrapping ErrMissingField), then expr-lang's message and position.
//     Finding them costs nothing on the success path.
package expression
