// Package transform holds the built-in stateless record operators, each an
// expression over the record's JSON fields (see internal/expression):
//
//   - map:    the value of `expression` (as JSON) becomes the record's value;
//   - filter: keeps records for which `condition` is true;
//   - select: builds a JSON object from `fields` (output field -> expression),
//     with keys in sorted order.
//
// All three keep the record's key and timestamp. A record whose value is not
// JSON, or whose expression fails, is returned as an error from
// ProcessRecord; the runtime fails the task or skips the record according to
// the vertex's on_error. Importing the package registers the types in
// api.Default.
package transform
