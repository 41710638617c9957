package codec

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
)

var messages = []func() proto.Message{
	func() proto.Message { return &schedulerpb.Call{} },
	func() proto.Message { return &schedulerpb.Event{} },
	func() proto.Message { return &executorpb.Call{} },
	func() proto.Message { return &executorpb.Event{} },
}

func seedFromRecordings(f *testing.F) {
	re := regexp.MustCompile(`(?m)^\d+\\n(\{.*\})$|^(\{"type".*\})$`)
	for _, name := range []string{"scheduler-json-session.txt", "executor-session.txt", "scheduler-errors.txt"} {
		data, err := os.ReadFile(filepath.Join(recordings, name))
		if err != nil {
			f.Fatal(err)
		}
		for _, m := range re.FindAllSubmatch(data, 40) {
			body := m[1]
			if body == nil {
				body = m[2]
			}
			f.Add(body, uint8(len(body)))
		}
	}
}

// FuzzDecodeJSON: no input panics; whatever decodes re-encodes, and the
// encoding decodes to the same encoding again.
func FuzzDecodeJSON(f *testing.F) {
	seedFromRecordings(f)
	f.Add([]byte(`{"limits":{"cpus":{"value":"-Infinity"}},"x":null}`), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		m := messages[int(which)%len(messages)]()
		if err := UnmarshalJSON(data, m); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		out, err := MarshalJSON(m)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		again := m.ProtoReflect().New().Interface()
		if err := UnmarshalJSON(out, again); err != nil {
			t.Fatalf("own output does not decode: %v\n%s", err, out)
		}
		out2, err := MarshalJSON(again)
		if err != nil || string(out2) != string(out) {
			t.Fatalf("encoding not stable:\n%s\n%s", out, out2)
		}
	})
}

// FuzzDecodeProtobuf: no input panics; whatever decodes survives both
// encodings.
func FuzzDecodeProtobuf(f *testing.F) {
	for _, mk := range messages {
		m := mk()
		b, _ := proto.Marshal(m)
		f.Add(b, uint8(0))
	}
	f.Add([]byte{0x08, 0xff, 0xff}, uint8(0))
	f.Add([]byte{0x10, 0x01, 0x1a, 0x1d, 0x0a, 0x1b, 0x0a, 0x04, 'r', 'o', 'o', 't', 0x12, 0x08, 'r', 'e', 'c', 'o', 'r', 'd', 'e', 'r'}, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		m := messages[int(which)%len(messages)]()
		if err := UnmarshalProtobuf(data, m); err != nil {
			return
		}
		js, err := MarshalJSON(m)
		if err != nil {
			t.Fatalf("decoded message does not encode as JSON: %v", err)
		}
		back := m.ProtoReflect().New().Interface()
		if err := UnmarshalJSON(js, back); err != nil {
			t.Fatalf("JSON of a decoded message does not decode: %v\n%s", err, js)
		}
	})
}
