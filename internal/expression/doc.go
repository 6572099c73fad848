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
//   - An Env is reused across records and across programs; a Program is not
//     safe for concurrent use (each subtask compiles its own), an Env
//     neither.
//   - Field access without decoding the record: Env.Reset checks the JSON in
//     one allocation-free pass (the same grammar, number range and nesting
//     limit encoding/json enforces, so exactly the records that failed
//     before fail) and records where each top-level value is; a Program
//     decodes only the top-level fields it reads (known at compile time),
//     each as the full decode would (numbers as above, nested values through
//     encoding/json). Programs reading `_value` or `$env`, records that are
//     not objects and records the scan cannot index exactly (escaped keys,
//     numbers float64 cannot hold, invalid JSON) take the full decode.
//     Duplicate keys resolve as encoding/json does: the last occurrence
//     wins, in nested objects too. (AppendFieldKey, the keyBy fast path,
//     predates this and takes the first; records with duplicate keys are
//     not valid JSON objects by RFC 8259's SHOULD.) Ints in [-1024, 16384)
//     are boxed without allocating.
//   - A path program, a chain of constant member accesses on a field such
//     as `left.auction` (how joins' outputs are read), is read from the
//     record's bytes one nested object at a time, decoding only the value
//     at its end; where the bytes cannot settle it (a step missing or not
//     an object, a record decoded whole) the VM evaluates it, so values and
//     errors are the VM's (path.go).
//   - Program.AppendFieldJSON copies a plain field's (or path's) JSON from the record
//     when it is already what AppendJSON writes (select uses it).
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
