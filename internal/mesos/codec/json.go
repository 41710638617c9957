package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// SyntaxError is a body that is not JSON at all. Mesos answers it with 400
// "Failed to parse body into JSON: ...".
type SyntaxError struct{ Err error }

func (e *SyntaxError) Error() string { return "syntax error: " + e.Err.Error() }
func (e *SyntaxError) Unwrap() error { return e.Err }

// ConversionError is valid JSON that does not convert into the message:
// wrong JSON types, bad enum names for required fields, bad base64, missing
// required fields. Mesos answers it with 400 "Failed to convert JSON into
// <Message> protobuf: ..."; Reason is the part after the colon, worded as
// Mesos words it.
type ConversionError struct{ Reason string }

func (e *ConversionError) Error() string { return e.Reason }

func convErr(format string, args ...any) error {
	return &ConversionError{Reason: fmt.Sprintf(format, args...)}
}

// ---------------------------------------------------------------------------
// Encoding.

// fieldPlan caches, per message type, the fields to visit and which of them
// carry an explicit default worth writing when unset.
type fieldPlan struct {
	fields      []protoreflect.FieldDescriptor
	emitDefault []bool
}

var plans sync.Map // protoreflect.FullName -> *fieldPlan

func planFor(md protoreflect.MessageDescriptor) *fieldPlan {
	if p, ok := plans.Load(md.FullName()); ok {
		return p.(*fieldPlan)
	}
	fds := md.Fields()
	p := &fieldPlan{
		fields:      make([]protoreflect.FieldDescriptor, fds.Len()),
		emitDefault: make([]bool, fds.Len()),
	}
	for i := 0; i < fds.Len(); i++ {
		fd := fds.Get(i)
		p.fields[i] = fd
		if fd.HasDefault() && !fd.IsList() && !fd.IsMap() && fd.ContainingOneof() == nil {
			deprecated := false
			if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts != nil {
				deprecated = opts.GetDeprecated()
			}
			p.emitDefault[i] = !deprecated
		}
	}
	plans.Store(md.FullName(), p)
	return p
}

// MarshalJSON encodes m in Mesos' JSON mapping. Fields come in declaration
// order, as Mesos writes them.
func MarshalJSON(m proto.Message) ([]byte, error) {
	if missing := MissingRequired(m); len(missing) > 0 {
		return nil, fmt.Errorf("encoding %s as JSON: missing required fields: %s",
			m.ProtoReflect().Descriptor().FullName(), strings.Join(missing, ", "))
	}
	return appendMessage(make([]byte, 0, 256), m.ProtoReflect()), nil
}

func appendMessage(b []byte, m protoreflect.Message) []byte {
	p := planFor(m.Descriptor())
	b = append(b, '{')
	n := 0
	for i, fd := range p.fields {
		var v protoreflect.Value
		switch {
		case m.Has(fd):
			v = m.Get(fd)
		case p.emitDefault[i]:
			v = fd.Default()
		default:
			continue
		}
		if !fd.IsList() && !fd.IsMap() && fd.Kind() == protoreflect.EnumKind && fd.Enum().Values().ByNumber(v.Enum()) == nil {
			// A value this schema does not name (a newer Mesos): Mesos
			// leaves such fields out of its JSON, and so do we.
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = appendString(b, string(fd.Name()))
		b = append(b, ':')
		switch {
		case fd.IsList():
			l := v.List()
			b = append(b, '[')
			written := 0
			for j := 0; j < l.Len(); j++ {
				if fd.Kind() == protoreflect.EnumKind && fd.Enum().Values().ByNumber(l.Get(j).Enum()) == nil {
					continue
				}
				if written > 0 {
					b = append(b, ',')
				}
				written++
				b = appendSingular(b, fd, l.Get(j))
			}
			b = append(b, ']')
		case fd.IsMap():
			b = appendMap(b, fd, v.Map())
		default:
			b = appendSingular(b, fd, v)
		}
	}
	return append(b, '}')
}

func appendMap(b []byte, fd protoreflect.FieldDescriptor, mp protoreflect.Map) []byte {
	// Sorted keys keep the output deterministic (tests, caches, diffs).
	keys := make([]protoreflect.MapKey, 0, mp.Len())
	mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	sortMapKeys(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k.String())
		b = append(b, ':')
		b = appendSingular(b, fd.MapValue(), mp.Get(k))
	}
	return append(b, '}')
}

func sortMapKeys(keys []protoreflect.MapKey) {
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j].String() < keys[j-1].String(); j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
}

func appendSingular(b []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) []byte {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return strconv.AppendBool(b, v.Bool())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.AppendInt(b, v.Int(), 10)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.AppendUint(b, v.Uint(), 10)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return appendFloat(b, v.Float())
	case protoreflect.StringKind:
		return appendString(b, v.String())
	case protoreflect.BytesKind:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, v.Bytes())
		return append(b, '"')
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return appendString(b, string(ev.Name()))
		}
		return strconv.AppendInt(b, int64(v.Enum()), 10)
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return appendMessage(b, v.Message())
	}
	return append(b, "null"...)
}

// appendFloat writes doubles as Mesos does ("4.0", "0.25"), and the
// infinities as the strings Mesos accepts for them (TaskInfo.limits).
func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	}
	start := len(b)
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		b = strconv.AppendFloat(b, f, 'g', -1, 64)
	} else {
		b = strconv.AppendFloat(b, f, 'f', -1, 64)
	}
	if bytes.IndexAny(b[start:], ".eE") < 0 {
		b = append(b, ".0"...)
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString writes a JSON string. Invalid UTF-8 becomes U+FFFD, so the
// output is always valid JSON.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// ---------------------------------------------------------------------------
// Decoding.

// maxDepth bounds nesting so that hostile input cannot exhaust the stack.
const maxDepth = 100

// UnmarshalJSON decodes Mesos JSON into m (reset first). It returns a
// *SyntaxError when data is not JSON and a *ConversionError when it does not
// convert into m.
func UnmarshalJSON(data []byte, m proto.Message) error {
	proto.Reset(m)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return &SyntaxError{Err: errors.New("empty body: expected a JSON object")}
		}
		return &SyntaxError{Err: err}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &SyntaxError{Err: errors.New("unexpected data after the top-level JSON value")}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return convErr("Expecting a JSON object")
	}
	if err := decodeObject(obj, m.ProtoReflect(), 0); err != nil {
		return err
	}
	if missing := MissingRequired(m); len(missing) > 0 {
		return convErr("Missing required fields: %s", strings.Join(missing, ", "))
	}
	return nil
}

func decodeObject(obj map[string]any, m protoreflect.Message, depth int) error {
	if depth > maxDepth {
		return convErr("JSON nested deeper than %d levels", maxDepth)
	}
	fields := m.Descriptor().Fields()
	// Sorted keys make the error for a body with several problems
	// deterministic.
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		raw := obj[key]
		fd := fields.ByName(protoreflect.Name(key))
		if fd == nil || raw == nil {
			continue // Mesos ignores unknown keys; null means absent.
		}
		switch {
		case fd.IsList():
			arr, ok := raw.([]any)
			if !ok {
				return convErr("Not expecting a JSON %s for field '%s'", jsonKind(raw), key)
			}
			l := m.Mutable(fd).List()
			for _, el := range arr {
				v, skip, err := decodeSingular(fd, el, m, depth)
				if err != nil {
					return err
				}
				if !skip {
					l.Append(v)
				}
			}
		case fd.IsMap():
			mobj, ok := raw.(map[string]any)
			if !ok {
				return convErr("Not expecting a JSON %s for field '%s'", jsonKind(raw), key)
			}
			mp := m.Mutable(fd).Map()
			for k, el := range mobj {
				mk, err := mapKey(fd.MapKey(), k)
				if err != nil {
					return err
				}
				if fd.MapValue().Message() != nil {
					sub, ok := el.(map[string]any)
					if !ok {
						return convErr("Not expecting a JSON %s for field '%s'", jsonKind(el), key)
					}
					mv := mp.NewValue()
					if err := decodeObject(sub, mv.Message(), depth+1); err != nil {
						return err
					}
					mp.Set(mk, mv)
					continue
				}
				v, skip, err := decodeSingular(fd.MapValue(), el, m, depth)
				if err != nil {
					return err
				}
				if !skip {
					mp.Set(mk, v)
				}
			}
		default:
			v, skip, err := decodeSingular(fd, raw, m, depth)
			if err != nil {
				return err
			}
			if !skip {
				m.Set(fd, v)
			}
		}
	}
	return nil
}

func mapKey(fd protoreflect.FieldDescriptor, k string) (protoreflect.MapKey, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(k).MapKey(), nil
	case protoreflect.BoolKind:
		b, err := strconv.ParseBool(k)
		if err != nil {
			return protoreflect.MapKey{}, convErr("map key %q is not a bool", k)
		}
		return protoreflect.ValueOfBool(b).MapKey(), nil
	}
	v, _, err := decodeSingular(fd, k, nil, 0)
	if err != nil {
		return protoreflect.MapKey{}, err
	}
	return v.MapKey(), nil
}

// decodeSingular converts one JSON value for field fd. skip is true for an
// unknown enum name of a non-required field, which Mesos drops silently.
func decodeSingular(fd protoreflect.FieldDescriptor, raw any, parent protoreflect.Message, depth int) (v protoreflect.Value, skip bool, err error) {
	name := fd.Name()
	wrong := func() error {
		return convErr("Not expecting a JSON %s for field '%s'", jsonKind(raw), name)
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		obj, ok := raw.(map[string]any)
		if !ok {
			return v, false, wrong()
		}
		var sub protoreflect.Message
		if fd.IsList() {
			sub = parent.Mutable(fd).List().NewElement().Message()
		} else {
			sub = parent.NewField(fd).Message()
		}
		if err := decodeObject(obj, sub, depth+1); err != nil {
			return v, false, err
		}
		return protoreflect.ValueOfMessage(sub), false, nil
	case protoreflect.StringKind:
		s, ok := raw.(string)
		if !ok {
			return v, false, wrong()
		}
		return protoreflect.ValueOfString(s), false, nil
	case protoreflect.BytesKind:
		s, ok := raw.(string)
		if !ok {
			return v, false, wrong()
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return v, false, convErr("Failed to base64-decode field '%s': %v", name, err)
		}
		return protoreflect.ValueOfBytes(b), false, nil
	case protoreflect.BoolKind:
		switch t := raw.(type) {
		case bool:
			return protoreflect.ValueOfBool(t), false, nil
		case string:
			switch t {
			case "true":
				return protoreflect.ValueOfBool(true), false, nil
			case "false":
				return protoreflect.ValueOfBool(false), false, nil
			}
		}
		return v, false, wrong()
	case protoreflect.EnumKind:
		s, ok := raw.(string)
		if !ok {
			return v, false, wrong()
		}
		ev := fd.Enum().Values().ByName(protoreflect.Name(s))
		if ev == nil {
			if fd.Cardinality() == protoreflect.Required {
				return v, false, convErr("Failed to find enum for '%s' of field '%s'", s, name)
			}
			return v, true, nil
		}
		return protoreflect.ValueOfEnum(ev.Number()), false, nil
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		var f float64
		switch t := raw.(type) {
		case json.Number:
			f, err = strconv.ParseFloat(string(t), 64)
		case string:
			switch t {
			case "Infinity":
				f = math.Inf(1)
			case "-Infinity":
				f = math.Inf(-1)
			case "NaN":
				f = math.NaN()
			default:
				f, err = strconv.ParseFloat(strings.TrimSpace(t), 64)
			}
		default:
			return v, false, wrong()
		}
		if err != nil {
			return v, false, convErr("Failed to convert '%v' to a number for field '%s'", raw, name)
		}
		if fd.Kind() == protoreflect.FloatKind {
			return protoreflect.ValueOfFloat32(float32(f)), false, nil
		}
		return protoreflect.ValueOfFloat64(f), false, nil
	}
	// Integers: JSON numbers or numeric strings.
	var s string
	switch t := raw.(type) {
	case json.Number:
		s = string(t)
	case string:
		s = strings.TrimSpace(t)
	default:
		return v, false, wrong()
	}
	bits := 64
	switch fd.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		bits = 32
	}
	switch fd.Kind() {
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		u, err := parseUint(s, bits)
		if err != nil {
			return v, false, convErr("Failed to convert '%s' to an unsigned %d-bit integer for field '%s'", s, bits, name)
		}
		if bits == 32 {
			return protoreflect.ValueOfUint32(uint32(u)), false, nil
		}
		return protoreflect.ValueOfUint64(u), false, nil
	default:
		i, err := parseInt(s, bits)
		if err != nil {
			return v, false, convErr("Failed to convert '%s' to a %d-bit integer for field '%s'", s, bits, name)
		}
		if bits == 32 {
			return protoreflect.ValueOfInt32(int32(i)), false, nil
		}
		return protoreflect.ValueOfInt64(i), false, nil
	}
}

// parseInt accepts integral JSON numbers, including forms like 5050.0 or
// 1e3 that some JSON writers produce for integers.
func parseInt(s string, bits int) (int64, error) {
	if i, err := strconv.ParseInt(s, 10, bits); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) {
		return 0, errors.New("not an integer")
	}
	lim := math.Ldexp(1, bits-1)
	if f < -lim || f >= lim {
		return 0, errors.New("out of range")
	}
	return int64(f), nil
}

func parseUint(s string, bits int) (uint64, error) {
	if u, err := strconv.ParseUint(s, 10, bits); err == nil {
		return u, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || f < 0 || f >= math.Ldexp(1, bits) {
		return 0, errors.New("not an unsigned integer")
	}
	return uint64(f), nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// ---------------------------------------------------------------------------
// Required fields.

// MissingRequired lists the required fields that are not set in m, as paths
// relative to m ("subscribe.framework_info.user", "offers[0].id"), the way
// Mesos names them in its errors.
func MissingRequired(m proto.Message) []string {
	var out []string
	collectMissing(m.ProtoReflect(), "", &out)
	sort.Strings(out)
	return out
}

func collectMissing(m protoreflect.Message, prefix string, out *[]string) {
	md := m.Descriptor()
	fds := md.Fields()
	for i := 0; i < fds.Len(); i++ {
		fd := fds.Get(i)
		if fd.Cardinality() == protoreflect.Required && !m.Has(fd) {
			*out = append(*out, prefix+string(fd.Name()))
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for j := 0; j < l.Len(); j++ {
				collectMissing(l.Get(j).Message(), fmt.Sprintf("%s%s[%d].", prefix, fd.Name(), j), out)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				collectMissing(mv.Message(), fmt.Sprintf("%s%s[%s].", prefix, fd.Name(), k.String()), out)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			collectMissing(v.Message(), prefix+string(fd.Name())+".", out)
		}
		return true
	})
}
