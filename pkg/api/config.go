package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/expr-lang/expr"
)

// Errors reported (wrapped in a *FieldError) by DecodeConfig.
var (
	// ErrUnknownField: the raw config names a field the type does not declare.
	ErrUnknownField = errors.New("unknown field")
	// ErrMissingField: a required field is absent.
	ErrMissingField = errors.New("missing required field")
	// ErrFieldType: the value cannot be converted to the field's type.
	ErrFieldType = errors.New("wrong type")
	// ErrFieldValue: the value has the right type but is not allowed (enum,
	// expression that does not compile, Field.Validate failure).
	ErrFieldValue = errors.New("invalid value")
)

// FieldError is one config field's problem. DecodeConfig joins one FieldError
// per bad field with errors.Join, so callers that know where each field was
// written (the job spec parser) can point at it.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return fmt.Sprintf("field %q: %v", e.Field, e.Err) }

func (e *FieldError) Unwrap() error { return e.Err }

// FieldErrors returns the FieldErrors contained in err (as produced by
// DecodeConfig), in order; nil if there are none.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// DecodeConfig validates raw configuration (decoded from YAML or JSON)
// against the type's Fields and returns it converted to the declared Go
// types, with defaults applied for absent fields and the zero value of the
// type for absent fields without default. A nil value counts as absent. The
// zero value given to an absent field is not checked by Enum or Validate (it
// means "not set"; the operator's constructor decides what that means, such
// as the window slide defaulting to its size).
//
// Accepted inputs per field type:
//   - TypeString: a string.
//   - TypeInt: any integer, or an integral float (JSON numbers) or json.Number;
//     decoded as int64.
//   - TypeFloat: any number; decoded as float64.
//   - TypeBool: a bool.
//   - TypeDuration: a Go duration string ("500ms", "1m30s") or an integer
//     number of milliseconds; decoded as time.Duration.
//   - TypeExpression: a string that compiles as an expr-lang expression.
//   - TypeStringList: a list of strings; decoded as []string.
//   - TypeStringMap: a mapping of strings to strings; decoded as
//     map[string]string.
//
// Every problem is reported, each as a *FieldError, joined with errors.Join.
func (t *OperatorType) DecodeConfig(raw map[string]any) (Config, error) {
	var errs []error
	known := make(map[string]bool, len(t.Fields))
	for _, f := range t.Fields {
		known[f.Name] = true
	}
	var unknown []string
	for k := range raw {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		errs = append(errs, &FieldError{Field: k, Err: fmt.Errorf("%w of operator type %q (known fields: %s)",
			ErrUnknownField, t.Name, t.knownFields())})
	}

	cfg := make(Config, len(t.Fields))
	for _, f := range t.Fields {
		v, present := raw[f.Name]
		if v == nil {
			present = false
		}
		if !present {
			switch {
			case f.Required:
				errs = append(errs, &FieldError{Field: f.Name, Err: fmt.Errorf("%w of type %s: set it in config", ErrMissingField, f.Type)})
			case f.Default != nil:
				dv, err := decodeField(f, f.Default)
				if err != nil {
					errs = append(errs, &FieldError{Field: f.Name, Err: fmt.Errorf("default of operator type %q is invalid (a bug in its registration): %w", t.Name, err)})
					continue
				}
				cfg[f.Name] = dv
			default:
				cfg[f.Name] = zeroValue(f.Type)
			}
			continue
		}
		dv, err := decodeField(f, v)
		if err != nil {
			errs = append(errs, &FieldError{Field: f.Name, Err: err})
			continue
		}
		cfg[f.Name] = dv
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// DecodeConfigJSON decodes config JSON (as written by EncodeConfig) and
// validates it with DecodeConfig. Numbers are decoded exactly (no float64
// rounding of large integers).
func (t *OperatorType) DecodeConfigJSON(data []byte) (Config, error) {
	raw := map[string]any{}
	if len(bytes.TrimSpace(data)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("decode config of operator type %q: %w", t.Name, err)
		}
	}
	return t.DecodeConfig(raw)
}

// Instantiate decodes config JSON as a JobGraph vertex carries it
// (EncodeConfig's output) with DecodeConfigJSON and builds the type's
// Source, Operator or Sink from it (NewSource, NewOperator or NewSink, by
// Kind): exactly what a TaskManager does when it deploys the vertex. The job
// spec validator calls it on the bytes it stores, so a config that validates
// is a config that deploys. Constructors must not do I/O or start
// goroutines (Open does that), so the instance can simply be dropped.
func (t *OperatorType) Instantiate(config []byte) (any, error) {
	cfg, err := t.DecodeConfigJSON(config)
	if err != nil {
		return nil, err
	}
	switch {
	case t.Kind == KindSource && t.NewSource != nil:
		return t.NewSource(cfg)
	case t.Kind == KindOperator && t.NewOperator != nil:
		return t.NewOperator(cfg)
	case t.Kind == KindSink && t.NewSink != nil:
		return t.NewSink(cfg)
	}
	return nil, fmt.Errorf("operator type %q of kind %v has no constructor for its kind", t.Name, t.Kind)
}

// EncodeConfig encodes a decoded Config as JSON that DecodeConfig (or
// DecodeConfigJSON) reads back to an equal Config: for every cfg that
// DecodeConfig returned, DecodeConfigJSON(EncodeConfig(cfg)) succeeds and
// returns cfg. To keep that promise, an optional field without default that
// holds its type's zero value is left out, so it reads back as absent (as it
// was decoded) instead of as a present value that Enum or Validate would
// check. Durations are written as Go duration strings. Keys that are not
// fields of the type are an error.
func (t *OperatorType) EncodeConfig(cfg Config) ([]byte, error) {
	out := make(map[string]any, len(cfg))
	var errs []error
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := cfg[k]
		f, ok := t.Field(k)
		if !ok {
			errs = append(errs, &FieldError{Field: k, Err: fmt.Errorf("%w of operator type %q (known fields: %s)", ErrUnknownField, t.Name, t.knownFields())})
			continue
		}
		if !f.Required && f.Default == nil && isUnset(f.Type, v) {
			continue
		}
		switch x := v.(type) {
		case time.Duration:
			out[k] = x.String()
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				errs = append(errs, &FieldError{Field: k, Err: fmt.Errorf("%w: %v cannot be encoded as JSON", ErrFieldValue, x)})
				continue
			}
			out[k] = x
		default:
			if f.Type == TypeDuration && v != nil {
				errs = append(errs, &FieldError{Field: k, Err: fmt.Errorf("%w: want time.Duration, got %T", ErrFieldType, v)})
				continue
			}
			out[k] = v
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("encode config of operator type %q: %w", t.Name, errors.Join(errs...))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("encode config of operator type %q: %w", t.Name, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func (t *OperatorType) knownFields() string {
	if len(t.Fields) == 0 {
		return "none"
	}
	names := make([]string, len(t.Fields))
	for i, f := range t.Fields {
		names[i] = f.Name
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// isUnset reports whether v is what DecodeConfig gives an absent field of
// type ft without default: the type's zero value (nil for lists and maps; an
// empty but non-nil list or map was written by the user and is kept).
func isUnset(ft FieldType, v any) bool {
	if v == nil {
		return true
	}
	switch ft {
	case TypeStringList:
		l, ok := v.([]string)
		return ok && l == nil
	case TypeStringMap:
		m, ok := v.(map[string]string)
		return ok && m == nil
	}
	return v == zeroValue(ft)
}

func zeroValue(ft FieldType) any {
	switch ft {
	case TypeString, TypeExpression:
		return ""
	case TypeInt:
		return int64(0)
	case TypeFloat:
		return float64(0)
	case TypeBool:
		return false
	case TypeDuration:
		return time.Duration(0)
	case TypeStringList:
		return []string(nil)
	case TypeStringMap:
		return map[string]string(nil)
	}
	return nil
}

// decodeField converts v to f's Go type and runs Enum and Validate checks.
func decodeField(f Field, v any) (any, error) {
	var out any
	var err error
	switch f.Type {
	case TypeString:
		out, err = toString(v)
	case TypeInt:
		out, err = toInt(v)
	case TypeFloat:
		out, err = toFloat(v)
	case TypeBool:
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("%w: want true or false, got %s", ErrFieldType, describe(v))
		}
		out = b
	case TypeDuration:
		out, err = toDuration(v)
	case TypeExpression:
		var s string
		s, err = toString(v)
		if err == nil {
			if strings.TrimSpace(s) == "" {
				if f.Required {
					return nil, fmt.Errorf("%w: empty expression: write one, e.g. value.amount > 0", ErrFieldValue)
				}
			} else if _, cerr := compileExpression(s); cerr != nil {
				return nil, fmt.Errorf("%w: expression %q does not compile: %v", ErrFieldValue, s, oneLine(cerr.Error()))
			}
			out = s
		}
	case TypeStringList:
		out, err = toStringList(v)
	case TypeStringMap:
		out, err = toStringMap(v)
	default:
		return nil, fmt.Errorf("field type %q is not supported", f.Type)
	}
	if err != nil {
		return nil, err
	}
	if len(f.Enum) > 0 {
		check := func(s string) error {
			if !slices.Contains(f.Enum, s) {
				return fmt.Errorf("%w %q: use one of %s", ErrFieldValue, s, strings.Join(f.Enum, ", "))
			}
			return nil
		}
		switch x := out.(type) {
		case string:
			if err := check(x); err != nil {
				return nil, err
			}
		case []string:
			for _, s := range x {
				if err := check(s); err != nil {
					return nil, err
				}
			}
		}
	}
	if f.Validate != nil {
		if err := f.Validate(out); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrFieldValue, err)
		}
	}
	return out, nil
}

// compileExpression checks that src is a valid expression. Identifiers are
// resolved at run time against the record, so undefined ones are allowed.
func compileExpression(src string) (any, error) {
	return expr.Compile(src, expr.Env(map[string]any{}), expr.AllowUndefinedVariables())
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("string %q", x)
	case bool:
		return fmt.Sprintf("bool %v", x)
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprintf("integer %v", x)
	case float32, float64, json.Number:
		return fmt.Sprintf("number %v", x)
	case []any, []string:
		return "a list"
	case map[string]any, map[string]string, map[any]any:
		return "a mapping"
	case time.Duration:
		return fmt.Sprintf("duration %v", x)
	}
	return fmt.Sprintf("%T", v)
}

func toString(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		hint := ""
		switch v.(type) {
		case int, int64, float64, bool, json.Number:
			hint = ": quote the value"
		}
		return "", fmt.Errorf("%w: want a string, got %s%s", ErrFieldType, describe(v), hint)
	}
	return s, nil
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case uint:
		if uint64(x) > math.MaxInt64 {
			break
		}
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			break
		}
		return int64(x), nil
	case float32:
		return floatToInt(float64(x))
	case float64:
		return floatToInt(x)
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, nil
		}
		if f, err := x.Float64(); err == nil {
			return floatToInt(f)
		}
	}
	return 0, fmt.Errorf("%w: want an integer, got %s", ErrFieldType, describe(v))
}

func floatToInt(f float64) (int64, error) {
	if f != math.Trunc(f) || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("%w: want an integer, got %v", ErrFieldType, f)
	}
	if f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, fmt.Errorf("%w: %v is out of the integer range", ErrFieldValue, f)
	}
	return int64(f), nil
}

func toFloat(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	case json.Number:
		if f, err := x.Float64(); err == nil {
			return f, nil
		}
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		i, err := toInt(x)
		if err != nil {
			return 0, err
		}
		return float64(i), nil
	}
	return 0, fmt.Errorf("%w: want a number, got %s", ErrFieldType, describe(v))
}

func toDuration(v any) (time.Duration, error) {
	switch x := v.(type) {
	case time.Duration:
		return x, nil
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(x))
		if err != nil {
			return 0, fmt.Errorf("%w: want a duration such as \"500ms\" or \"1m30s\", got %q", ErrFieldType, x)
		}
		return d, nil
	case bool, []any, map[string]any:
	default:
		ms, err := toInt(v)
		if err != nil {
			return 0, fmt.Errorf("%w: want a duration such as \"500ms\" or an integer number of milliseconds, got %s", ErrFieldType, describe(v))
		}
		if ms > math.MaxInt64/int64(time.Millisecond) || ms < math.MinInt64/int64(time.Millisecond) {
			return 0, fmt.Errorf("%w: %d ms is out of range", ErrFieldValue, ms)
		}
		return time.Duration(ms) * time.Millisecond, nil
	}
	return 0, fmt.Errorf("%w: want a duration such as \"500ms\" or an integer number of milliseconds, got %s", ErrFieldType, describe(v))
}

func toStringList(v any) ([]string, error) {
	switch x := v.(type) {
	case []string:
		return slices.Clone(x), nil
	case []any:
		out := make([]string, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%w: element %d: want a string, got %s", ErrFieldType, i, describe(e))
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: want a list of strings, got %s", ErrFieldType, describe(v))
}

func toStringMap(v any) (map[string]string, error) {
	switch x := v.(type) {
	case map[string]string:
		out := make(map[string]string, len(x))
		for k, s := range x {
			out[k] = s
		}
		return out, nil
	case map[string]any:
		out := make(map[string]string, len(x))
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s, ok := x[k].(string)
			if !ok {
				return nil, fmt.Errorf("%w: key %q: want a string, got %s", ErrFieldType, k, describe(x[k]))
			}
			out[k] = s
		}
		return out, nil
	case map[any]any:
		out := make(map[string]string, len(x))
		for k, e := range x {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("%w: key %v: want string keys", ErrFieldType, k)
			}
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%w: key %q: want a string, got %s", ErrFieldType, ks, describe(e))
			}
			out[ks] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: want a mapping of strings to strings, got %s", ErrFieldType, describe(v))
}
