package execclient

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
)

// recordedStreams are the two recorded executor event streams, framed as
// the agent sends them, in JSON and in protobuf.
func recordedStreams(t testing.TB) (json, pb [][]byte) {
	sessions, _ := executorRecording(t)
	for _, s := range sessions {
		var j, p []byte
		for _, raw := range s.events() {
			j = append(j, recordio.Frame(raw)...)
			b, err := proto.Marshal(recordedEvent(t, raw))
			if err != nil {
				t.Fatal(err)
			}
			p = append(p, recordio.Frame(b)...)
		}
		json, pb = append(json, j), append(pb, p)
	}
	return json, pb
}

func TestReadRecordedStreams(t *testing.T) {
	js, pbs := recordedStreams(t)
	for i := range js {
		for _, tc := range []struct {
			enc    codec.Encoding
			stream []byte
		}{{codec.JSON, js[i]}, {codec.Protobuf, pbs[i]}} {
			var types []string
			err := readEvents(bytes.NewReader(tc.stream), tc.enc, func(ev *executorpb.Event) error {
				types = append(types, ev.GetType().String())
				return nil
			})
			want := [][]string{
				{"SUBSCRIBED", "LAUNCH", "ACKNOWLEDGED", "MESSAGE", "ACKNOWLEDGED"},
				{"SUBSCRIBED", "LAUNCH", "ACKNOWLEDGED", "KILL", "ACKNOWLEDGED", "SHUTDOWN"},
			}[i]
			if strings.Join(types, " ") != strings.Join(want, " ") {
				t.Errorf("%s session %d: events %v; want %v", tc.enc, i, types, want)
			}
			if err == nil || !strings.Contains(err.Error(), "closed the event stream after") {
				t.Errorf("%s session %d: end %v", tc.enc, i, err)
			}
		}
	}
}

// FuzzEventStream feeds arbitrary bytes to the event stream reader in both
// encodings, with the client's bookkeeping behind it: nothing panics, the
// stream always ends with an error that says what happened, every event
// delivered carries the payload its type promises, and the SUBSCRIBE the
// bookkeeping leads to still encodes.
func FuzzEventStream(f *testing.F) {
	js, pbs := recordedStreams(f)
	for i := range js {
		f.Add(js[i], false)
		f.Add(pbs[i], true)
		f.Add(js[i][:len(js[i])/2], false)
	}
	f.Add([]byte("x\n{}"), false)
	f.Add([]byte("17\n{\"type\":\"LAUNCH\"}"), false)
	f.Add([]byte("3\n\xff\xff\xff"), true)
	f.Add([]byte("99999999999999999999999\n"), true)
	f.Fuzz(func(t *testing.T, stream []byte, protobuf bool) {
		enc := codec.JSON
		if protobuf {
			enc = codec.Protobuf
		}
		c := New(Config{FrameworkID: "f", ExecutorID: "e", AgentURL: "http://127.0.0.1:1/api/v1/executor", Encoding: enc})
		n := 0
		err := readEvents(bytes.NewReader(stream), enc, func(ev *executorpb.Event) error {
			n++
			if err := checkEvent(ev); err != nil {
				t.Fatalf("delivered an event that fails checkEvent: %v", err)
			}
			c.track(ev)
			return nil
		})
		if err == nil {
			t.Fatal("a stream ended without saying why")
		}
		msg := err.Error()
		known := false
		for _, prefix := range []string{"the agent closed the event stream", "the event stream broke off", "the event stream is not RecordIO", "event "} {
			known = known || strings.HasPrefix(msg, prefix)
		}
		if !known {
			t.Fatalf("unexplained end of stream: %q", msg)
		}
		if _, err := codec.Marshal(enc, c.subscribeCall()); err != nil {
			t.Fatalf("after %d events the SUBSCRIBE does not encode: %v", n, err)
		}
	})
}
