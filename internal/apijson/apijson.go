// Package apijson renders the JobManager API's protobuf messages as the
// JSON that machines read: flowctl's `-o json` and `-o yaml`, and the REST
// API. One renderer serves both, so they cannot drift apart.
//
// Compared with protojson it makes these choices:
//   - enum values are plain names without their type prefix (RUNNING, not
//     JOB_STATUS_RUNNING; UNSPECIFIED values are "");
//   - 64-bit integers are JSON numbers, not strings (Flow's ids, counts and
//     sizes stay far below 2^53);
//   - a timestamp field (`<name>_time_ms`, `time_ms`, `timestamp_ms`,
//     `last_heartbeat_ms`: milliseconds since the epoch) loses its `_ms`
//     and becomes an RFC 3339 string (null when 0); durations (`*_ms`)
//     stay numbers of milliseconds;
//   - a bytes field that holds JSON (operator configs, job sections) is
//     embedded as that JSON value, text (a spec's YAML) is a string, other
//     bytes are base64 as in protojson;
//   - field names are the proto names (snake_case); every field is present,
//     with its zero value when unset.
package apijson

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Marshal renders m as indented JSON.
func Marshal(m proto.Message) ([]byte, error) {
	return json.MarshalIndent(Value(m), "", "  ")
}

// MarshalYAML renders m as YAML with the same fields and values as Marshal.
func MarshalYAML(m proto.Message) ([]byte, error) {
	// Through JSON, so YAML sees plain maps, lists and scalars in the
	// order JSON has them.
	b, err := json.Marshal(Value(m))
	if err != nil {
		return nil, err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, err
	}
	clearStyle(&n)
	return yaml.Marshal(&n)
}

// clearStyle drops the flow style yaml.v3 keeps from parsing JSON, so the
// output is block YAML.
func clearStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		clearStyle(c)
	}
}

// Value returns m as a JSON-ready value: an ordered object of its fields.
func Value(m proto.Message) any {
	if m == nil {
		return nil
	}
	return message(m.ProtoReflect())
}

// object is a JSON object that keeps its keys in proto field order.
type object struct {
	keys []string
	vals []any
}

func (o *object) set(k string, v any) {
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, v)
}

// MarshalJSON implements json.Marshaler.
func (o *object) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		vb, err := json.Marshal(o.vals[i])
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", k, err)
		}
		b.Write(vb)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

func message(m protoreflect.Message) *object {
	o := &object{}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		name := string(fd.Name())
		if fd.ContainingOneof() != nil && !fd.ContainingOneof().IsSynthetic() && !m.Has(fd) {
			continue // an unset oneof member is absent
		}
		if t, ok := timeField(name, fd); ok {
			ms := m.Get(fd).Int()
			if ms == 0 {
				o.set(t, nil)
			} else {
				o.set(t, time.UnixMilli(ms).UTC().Format(time.RFC3339Nano))
			}
			continue
		}
		o.set(name, fieldValue(fd, m.Get(fd), m.Has(fd)))
	}
	return o
}

// timeField reports whether fd holds milliseconds since the epoch, and the
// name it is rendered under.
func timeField(name string, fd protoreflect.FieldDescriptor) (string, bool) {
	if fd.IsList() || fd.IsMap() || (fd.Kind() != protoreflect.Int64Kind && fd.Kind() != protoreflect.Sint64Kind) {
		return "", false
	}
	if name == "time_ms" || name == "timestamp_ms" || name == "last_heartbeat_ms" || strings.HasSuffix(name, "_time_ms") {
		return strings.TrimSuffix(name, "_ms"), true
	}
	return "", false
}

func fieldValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, has bool) any {
	switch {
	case fd.IsList():
		l := v.List()
		out := make([]any, l.Len())
		for i := range out {
			out[i] = scalar(fd, l.Get(i), true)
		}
		return out
	case fd.IsMap():
		out := map[string]any{}
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			out[k.String()] = scalar(fd.MapValue(), mv, true)
			return true
		})
		return out
	}
	return scalar(fd, v, has)
}

func scalar(fd protoreflect.FieldDescriptor, v protoreflect.Value, has bool) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if !has {
			return nil
		}
		return message(v.Message())
	case protoreflect.EnumKind:
		return enumName(fd.Enum(), v.Enum())
	case protoreflect.BoolKind:
		return v.Bool()
	case protoreflect.StringKind:
		return v.String()
	case protoreflect.BytesKind:
		b := v.Bytes()
		if len(b) == 0 {
			return nil
		}
		if json.Valid(b) {
			return json.RawMessage(b)
		}
		if isText(b) {
			return string(b) // a spec's YAML, say
		}
		return base64.StdEncoding.EncodeToString(b)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return v.Float()
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return v.Uint()
	default: // the signed integer kinds
		return v.Int()
	}
}

// isText reports whether b is UTF-8 text without control characters other
// than tabs and line breaks.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if r < 0x20 && r != '\n' && r != '\r' && r != '\t' || r == 0x7f {
			return false
		}
	}
	return true
}

// Enum is e's plain value name (RUNNING; "" for UNSPECIFIED).
func Enum(e protoreflect.Enum) string { return enumName(e.Descriptor(), e.Number()) }

// enumName is the value's name without its enum type's prefix
// (JobStatus JOB_STATUS_RUNNING -> RUNNING); the zero UNSPECIFIED value is "".
func enumName(ed protoreflect.EnumDescriptor, n protoreflect.EnumNumber) string {
	vd := ed.Values().ByNumber(n)
	if vd == nil {
		return fmt.Sprint(int32(n))
	}
	name := strings.TrimPrefix(string(vd.Name()), EnumPrefix(ed))
	if name == "UNSPECIFIED" {
		return ""
	}
	return name
}

// EnumPrefix is the prefix an enum type's value names share by convention:
// its name in upper snake case and "_" (JobStatus -> "JOB_STATUS_").
func EnumPrefix(ed protoreflect.EnumDescriptor) string {
	var b strings.Builder
	for i, r := range string(ed.Name()) {
		if r >= 'A' && r <= 'Z' && i > 0 {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String()) + "_"
}
