package codec

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
)

// The recordings are what a real Apache Mesos 1.11 master and agent sent and
// accepted on the wire (testdata/mesos-recordings/README.md).
const recordings = "../../../testdata/mesos-recordings"

type record struct {
	file, stream string
	line         int
	length       int
	payload      string
}

var (
	streamLine = regexp.MustCompile(`stream '([a-z0-9-]+)' RecordIO record`)
	jsonRecord = regexp.MustCompile(`^(\d+)\\n(\{.*\})$`)
	hexLine    = regexp.MustCompile(`^hex: ([0-9a-f]+)$`)
	lenLine    = regexp.MustCompile(`RecordIO record: (\d+)\\n<`)
)

func readLines(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(recordings, name))
	if err != nil {
		t.Fatalf("golden recording missing: %v", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// jsonRecords returns the RecordIO records of the JSON recordings with the
// stream they arrived on.
func jsonRecords(t *testing.T, name string) []record {
	lines := readLines(t, name)
	var out []record
	stream := ""
	for i, l := range lines {
		if m := streamLine.FindStringSubmatch(l); m != nil {
			stream = m[1]
			continue
		}
		if m := jsonRecord.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			out = append(out, record{file: name, stream: stream, line: i + 1, length: n, payload: m[2]})
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no records found", name)
	}
	return out
}

func canonical(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, data)
	}
	return v
}

// TestGoldenJSONEvents decodes every event a real Mesos streamed in JSON,
// re-encodes it as JSON (it must be what Mesos sent, field for field,
// defaults included) and through protobuf and back (nothing may be lost).
func TestGoldenJSONEvents(t *testing.T) {
	var total int
	for _, file := range []string{"scheduler-json-session.txt", "scheduler-errors.txt", "executor-session.txt"} {
		for _, r := range jsonRecords(t, file) {
			if strings.Contains(r.payload, `"get_state"`) {
				// The recording of a wrong path (/api/v1/schedulerx) that
				// Mesos routed to its operator API: not a scheduler event.
				continue
			}
			total++
			// The executor side was re-printed by the recording executor,
			// so only the master's records keep their exact byte length.
			if r.stream != "executor" && r.length != len(r.payload) {
				t.Errorf("%s:%d: RecordIO length %d but payload has %d bytes", r.file, r.line, r.length, len(r.payload))
			}
			var m proto.Message = &schedulerpb.Event{}
			if r.stream == "executor" {
				m = &executorpb.Event{}
			}
			if err := UnmarshalJSON([]byte(r.payload), m); err != nil {
				t.Errorf("%s:%d: decode: %v", r.file, r.line, err)
				continue
			}
			out, err := MarshalJSON(m)
			if err != nil {
				t.Errorf("%s:%d: encode: %v", r.file, r.line, err)
				continue
			}
			if got, want := canonical(t, out), canonical(t, []byte(r.payload)); !reflect.DeepEqual(got, want) {
				t.Errorf("%s:%d: re-encoded JSON differs from Mesos'\n got: %s\nwant: %s", r.file, r.line, out, r.payload)
			}
			pb, err := Marshal(Protobuf, m)
			if err != nil {
				t.Errorf("%s:%d: protobuf encode: %v", r.file, r.line, err)
				continue
			}
			back := m.ProtoReflect().New().Interface()
			if err := Unmarshal(Protobuf, pb, back); err != nil {
				t.Errorf("%s:%d: protobuf decode: %v", r.file, r.line, err)
				continue
			}
			if !proto.Equal(m, back) {
				t.Errorf("%s:%d: protobuf round trip changed the message", r.file, r.line)
			}
		}
	}
	if total < 80 {
		t.Fatalf("only %d records checked; the recordings hold more", total)
	}
}

// TestGoldenJSONCalls decodes the calls that a real Mesos accepted (request
// bodies of the recordings) as scheduler or executor Calls.
func TestGoldenJSONCalls(t *testing.T) {
	for _, c := range []struct {
		file string
		msg  func() proto.Message
	}{
		{"scheduler-json-session.txt", func() proto.Message { return &schedulerpb.Call{} }},
		{"executor-session.txt", func() proto.Message { return &executorpb.Call{} }},
	} {
		lines := readLines(t, c.file)
		n := 0
		for i, l := range lines {
			// A request body is the first line after the blank line that
			// ends the request headers; the recordings print it on one line.
			if !strings.HasPrefix(l, `{"`) || i == 0 || lines[i-1] != "" {
				continue
			}
			if !strings.Contains(l, `"type": "`) {
				continue
			}
			m := c.msg()
			err := UnmarshalJSON([]byte(l), m)
			// Some recorded bodies are deliberately invalid (they show Mesos'
			// errors); those must fail here too, the others must decode.
			if err != nil {
				if _, ok := err.(*ConversionError); !ok {
					t.Errorf("%s:%d: %v", c.file, i+1, err)
				}
				continue
			}
			n++
			out, err := MarshalJSON(m)
			if err != nil {
				t.Fatalf("%s:%d: %v", c.file, i+1, err)
			}
			// Re-decoding makes the defaults written on output explicit, so
			// compare encodings rather than messages.
			again := c.msg()
			if err := UnmarshalJSON(out, again); err != nil {
				t.Errorf("%s:%d: JSON round trip failed: %v", c.file, i+1, err)
				continue
			}
			if out2, _ := MarshalJSON(again); !bytes.Equal(out, out2) {
				t.Errorf("%s:%d: JSON round trip changed the call\n got %s\nwant %s", c.file, i+1, out2, out)
			}
		}
		if n < 5 {
			t.Errorf("%s: only %d calls decoded", c.file, n)
		}
	}
}

// TestGoldenProtobuf checks the protobuf records of the recordings: their
// bytes decode, carry the length RecordIO announced, match the schema decode
// protoc printed, and re-encode to the same bytes.
func TestGoldenProtobuf(t *testing.T) {
	lines := readLines(t, "scheduler-protobuf-session.txt")
	checked := 0
	for i := 0; i < len(lines); i++ {
		lm := lenLine.FindStringSubmatch(lines[i])
		if lm == nil || i+1 >= len(lines) {
			continue
		}
		hm := hexLine.FindStringSubmatch(lines[i+1])
		if hm == nil {
			continue
		}
		raw, err := hex.DecodeString(hm[1])
		if err != nil {
			t.Fatalf("line %d: %v", i+2, err)
		}
		if n, _ := strconv.Atoi(lm[1]); n != len(raw) {
			t.Errorf("line %d: length %d, %d bytes", i+1, n, len(raw))
		}
		ev := &schedulerpb.Event{}
		if err := Unmarshal(Protobuf, raw, ev); err != nil {
			t.Errorf("line %d: %v", i+2, err)
			continue
		}
		again, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev)
		if err != nil || !bytes.Equal(again, raw) {
			t.Errorf("line %d: re-encoding differs (%v)\n got %x\nwant %x", i+2, err, again, raw)
		}
		// The schema decode follows "same record decoded with ...".
		j := i + 2
		for j < len(lines) && !strings.HasPrefix(lines[j], "same record decoded") {
			j++
		}
		var text strings.Builder
		unknown := false
		for k := j + 1; k < len(lines) && !strings.HasPrefix(lines[k], "<<<") && !strings.HasPrefix(lines[k], "==="); k++ {
			if regexp.MustCompile(`^\s*\d+: `).MatchString(lines[k]) {
				unknown = true // fields protoc could not name (see README)
			}
			text.WriteString(lines[k] + "\n")
		}
		if !unknown {
			want := &schedulerpb.Event{}
			if err := (prototext.UnmarshalOptions{}).Unmarshal([]byte(text.String()), want); err != nil {
				t.Errorf("line %d: schema decode unreadable: %v", j+1, err)
			} else if !proto.Equal(ev, want) {
				t.Errorf("line %d: decoded event differs from protoc's decode\n got %v\nwant %v", i+2, ev, want)
			}
		}
		checked++
	}
	if checked < 5 {
		t.Fatalf("only %d protobuf records checked", checked)
	}
}
