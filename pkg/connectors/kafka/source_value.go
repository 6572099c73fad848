package kafka

import (
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
)

// This file holds the rendering of a Kafka record as a Flow record's JSON
// value.

// value renders a Kafka record's value as the Flow record's JSON value.
func (s *Source) value(r *kgo.Record) ([]byte, error) {
	v := r.Value
	if s.raw {
		s.buf = append(s.buf[:0], `{"value":`...)
		s.buf = appendJSONString(s.buf, v)
		s.buf = append(s.buf, '}')
		v = s.buf
	} else if !validJSON(v) {
		if len(v) == 0 {
			return nil, errors.New("the value is empty, not a JSON document (format json; use format raw for other data)")
		}
		return nil, errors.New("the value is not valid JSON (format json; use format raw for other data)")
	}
	if !s.metadata {
		return v, nil
	}
	i := len(v) - 1
	for i >= 0 && (v[i] == ' ' || v[i] == '\n' || v[i] == '\r' || v[i] == '\t') {
		i--
	}
	if i < 0 || v[i] != '}' || firstNonSpace(v) != '{' {
		return v, nil // not an object: no fields to add
	}
	if s.raw {
		s.buf = s.buf[:i] // v is s.buf
	} else {
		s.buf = append(s.buf[:0], v[:i]...)
	}
	if !emptyObject(s.buf) {
		s.buf = append(s.buf, ',')
	}
	s.buf = append(s.buf, `"_topic":`...)
	s.buf = appendJSONString(s.buf, []byte(r.Topic))
	s.buf = append(s.buf, `,"_partition":`...)
	s.buf = strconv.AppendInt(s.buf, int64(r.Partition), 10)
	s.buf = append(s.buf, `,"_offset":`...)
	s.buf = strconv.AppendInt(s.buf, r.Offset, 10)
	s.buf = append(s.buf, '}')
	return s.buf, nil
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		if c != ' ' && c != '\n' && c != '\r' && c != '\t' {
			return c
		}
	}
	return 0
}

// emptyObject reports whether body (an object without its closing brace)
// has no member.
func emptyObject(body []byte) bool {
	for _, c := range body {
		switch c {
		case '{', ' ', '\n', '\r', '\t':
		default:
			return false
		}
	}
	return true
}

// appendJSONString appends b as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst, b []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, b[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
