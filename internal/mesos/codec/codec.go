// Package codec encodes and decodes Mesos v1 messages in the two encodings
// the Mesos HTTP APIs accept: application/x-protobuf and Mesos' own JSON
// mapping.
//
// Mesos' JSON is not proto3 JSON: keys are the proto field names
// (snake_case), enums are value names, bytes are standard base64, integers
// are numbers on output and numbers or numeric strings on input, unknown keys
// are ignored, and output carries unset optional fields that have an
// explicit, non-deprecated default (Filters.refuse_seconds: 5, ...). A
// required field that is missing is an error in both encodings.
package codec

import (
	"fmt"
	"mime"
	"strings"

	"google.golang.org/protobuf/proto"
)

// Encoding is one of the two wire encodings of the Mesos v1 APIs.
type Encoding int

const (
	// JSON is Mesos' JSON mapping, media type application/json.
	JSON Encoding = iota + 1
	// Protobuf is the protobuf binary encoding, media type
	// application/x-protobuf.
	Protobuf
)

// Media types of the two encodings, as Mesos spells them.
const (
	MediaTypeJSON     = "application/json"
	MediaTypeProtobuf = "application/x-protobuf"
)

// MediaType is the Content-Type (and Accept) value of the encoding.
func (e Encoding) MediaType() string {
	switch e {
	case JSON:
		return MediaTypeJSON
	case Protobuf:
		return MediaTypeProtobuf
	}
	return "application/octet-stream"
}

func (e Encoding) String() string {
	switch e {
	case JSON:
		return "json"
	case Protobuf:
		return "protobuf"
	}
	return fmt.Sprintf("Encoding(%d)", int(e))
}

// ParseEncoding reads an encoding name as users write it in flags: "json" or
// "protobuf" (also "proto" and the media types).
func ParseEncoding(s string) (Encoding, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "json", MediaTypeJSON:
		return JSON, nil
	case "protobuf", "proto", MediaTypeProtobuf:
		return Protobuf, nil
	}
	return 0, fmt.Errorf("unknown encoding %q: use json or protobuf", s)
}

// FromContentType maps a request's Content-Type to an encoding. Mesos
// compares the header exactly: "application/json; charset=utf-8" is refused
// with 415, and so it is here.
func FromContentType(contentType string) (Encoding, bool) {
	switch contentType {
	case MediaTypeJSON:
		return JSON, true
	case MediaTypeProtobuf:
		return Protobuf, true
	}
	return 0, false
}

// Negotiate picks the response encoding from an Accept header, as the Mesos
// master does for SUBSCRIBE: a missing header or */* means JSON; otherwise
// the first acceptable of application/json and application/x-protobuf in the
// client's order of preference (q values respected). ok is false when the
// client accepts neither (Mesos answers 406).
func Negotiate(accept string) (enc Encoding, ok bool) {
	if strings.TrimSpace(accept) == "" {
		return JSON, true
	}
	bestQ := -1.0
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if qs, has := params["q"]; has {
			if _, err := fmt.Sscanf(qs, "%g", &q); err != nil {
				continue
			}
		}
		if q <= 0 {
			continue
		}
		var cand Encoding
		switch mt {
		case MediaTypeJSON, "application/*", "*/*":
			cand = JSON
		case MediaTypeProtobuf:
			cand = Protobuf
		default:
			continue
		}
		if q > bestQ {
			bestQ, enc = q, cand
		}
	}
	return enc, bestQ > 0
}

// Marshal encodes m in the given encoding.
func Marshal(enc Encoding, m proto.Message) ([]byte, error) {
	switch enc {
	case JSON:
		return MarshalJSON(m)
	case Protobuf:
		b, err := proto.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("encoding %s as protobuf: %w", m.ProtoReflect().Descriptor().FullName(), err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("unknown encoding %d", int(enc))
}

// Unmarshal decodes data in the given encoding into m (which is reset
// first). Errors are *SyntaxError or *ConversionError for JSON and
// *ProtobufError for protobuf, so that a server can answer as Mesos does.
func Unmarshal(enc Encoding, data []byte, m proto.Message) error {
	switch enc {
	case JSON:
		return UnmarshalJSON(data, m)
	case Protobuf:
		return UnmarshalProtobuf(data, m)
	}
	return fmt.Errorf("unknown encoding %d", int(enc))
}

// ProtobufError is a protobuf body that does not parse into the expected
// message, or lacks required fields.
type ProtobufError struct {
	Message string // full name of the expected message
	Err     error
}

func (e *ProtobufError) Error() string {
	return fmt.Sprintf("body is not a valid %s protobuf: %v", e.Message, e.Err)
}

func (e *ProtobufError) Unwrap() error { return e.Err }

// UnmarshalProtobuf decodes protobuf bytes into m and checks its required
// fields, naming the missing ones by path.
func UnmarshalProtobuf(data []byte, m proto.Message) error {
	name := string(m.ProtoReflect().Descriptor().FullName())
	if err := (proto.UnmarshalOptions{AllowPartial: true}).Unmarshal(data, m); err != nil {
		return &ProtobufError{Message: name, Err: err}
	}
	if missing := MissingRequired(m); len(missing) > 0 {
		return &ProtobufError{Message: name, Err: fmt.Errorf("missing required fields: %s", strings.Join(missing, ", "))}
	}
	return nil
}
