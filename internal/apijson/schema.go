package apijson

import (
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Schemas returns OpenAPI 3 schemas (components/schemas) of the messages
// and every message and enum they reference, as Marshal renders them: the
// REST API's documentation is generated from the same descriptors and
// rules as its JSON, never written by hand.
func Schemas(roots ...protoreflect.MessageDescriptor) map[string]any {
	out := map[string]any{}
	var addMessage func(md protoreflect.MessageDescriptor)
	addEnum := func(ed protoreflect.EnumDescriptor) {
		name := string(ed.Name())
		if _, ok := out[name]; ok {
			return
		}
		var vals []string
		for i := 0; i < ed.Values().Len(); i++ {
			vals = append(vals, enumName(ed, ed.Values().Get(i).Number()))
		}
		out[name] = map[string]any{"type": "string", "enum": vals,
			"description": "Values of " + string(ed.FullName()) + " without the " + EnumPrefix(ed) + " prefix (\"\" is UNSPECIFIED)."}
	}
	var fieldSchema func(fd protoreflect.FieldDescriptor) map[string]any
	scalarSchema := func(fd protoreflect.FieldDescriptor) map[string]any {
		switch fd.Kind() {
		case protoreflect.MessageKind, protoreflect.GroupKind:
			addMessage(fd.Message())
			return map[string]any{"$ref": "#/components/schemas/" + string(fd.Message().Name())}
		case protoreflect.EnumKind:
			addEnum(fd.Enum())
			return map[string]any{"$ref": "#/components/schemas/" + string(fd.Enum().Name())}
		case protoreflect.BoolKind:
			return map[string]any{"type": "boolean"}
		case protoreflect.StringKind:
			return map[string]any{"type": "string"}
		case protoreflect.BytesKind:
			return map[string]any{"description": "JSON embedded as its value when the bytes are JSON, else text as a string, else base64."}
		case protoreflect.FloatKind, protoreflect.DoubleKind:
			return map[string]any{"type": "number"}
		default:
			return map[string]any{"type": "integer"}
		}
	}
	fieldSchema = func(fd protoreflect.FieldDescriptor) map[string]any {
		switch {
		case fd.IsList():
			return map[string]any{"type": "array", "items": scalarSchema(fd)}
		case fd.IsMap():
			return map[string]any{"type": "object", "additionalProperties": scalarSchema(fd.MapValue())}
		}
		return scalarSchema(fd)
	}
	addMessage = func(md protoreflect.MessageDescriptor) {
		name := string(md.Name())
		if _, ok := out[name]; ok {
			return
		}
		props := map[string]any{}
		out[name] = map[string]any{"type": "object", "properties": props}
		fields := md.Fields()
		for i := 0; i < fields.Len(); i++ {
			fd := fields.Get(i)
			fname := string(fd.Name())
			if t, ok := timeField(fname, fd); ok {
				props[t] = map[string]any{"type": "string", "format": "date-time", "nullable": true,
					"description": "RFC 3339 (the .proto's " + fname + ", milliseconds since the epoch); null when unset."}
				continue
			}
			s := fieldSchema(fd)
			if strings.HasSuffix(fname, "_ms") {
				s["description"] = "Milliseconds."
			}
			props[fname] = s
		}
	}
	for _, md := range roots {
		addMessage(md)
	}
	return out
}

// SortedKeys returns m's keys in order (for stable generated documents).
func SortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
