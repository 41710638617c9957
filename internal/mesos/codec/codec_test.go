package codec

import (
	"errors"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
)

// The error texts are the ones a real Mesos 1.11 master answered
// (testdata/mesos-recordings/scheduler-errors.txt), after its
// "Failed to convert JSON into Call protobuf: " prefix.
func TestDecodeErrorsAsMesosWordsThem(t *testing.T) {
	for _, c := range []struct {
		name, body string
		syntax     bool
		want       string
	}{
		{"malformed", `{"type": "SUBSCRIBE", "subscribe": {`, true, ""},
		{"empty", ``, true, ""},
		{"not an object", `[1,2,3]`, false, "Expecting a JSON object"},
		{"missing required", `{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "recorder"}}}`, false,
			"Missing required fields: subscribe.framework_info.user"},
		{"wrong JSON type", `{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": 5, "name": "x"}}}`, false,
			"Not expecting a JSON number for field 'user'"},
		{"array for a message", `{"type": "SUBSCRIBE", "subscribe": []}`, false,
			"Not expecting a JSON array for field 'subscribe'"},
		{"object for a repeated field", `{"type": "REVIVE", "revive": {"roles": {}}}`, false,
			"Not expecting a JSON object for field 'roles'"},
		{"bad base64", `{"type":"ACKNOWLEDGE","acknowledge":{"agent_id":{"value":"a"},"task_id":{"value":"t"},"uuid":"%%%"}}`, false,
			"Failed to base64-decode field 'uuid'"},
		{"bad integer", `{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n"},"offer_constraints":{}}, "framework_id":{"value":"f"}}`, false, ""},
		{"trailing garbage", `{"type":"REVIVE"} {}`, true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := UnmarshalJSON([]byte(c.body), &schedulerpb.Call{})
			if c.want == "" && !c.syntax {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var se *SyntaxError
			var ce *ConversionError
			switch {
			case c.syntax && !errors.As(err, &se):
				t.Fatalf("want a syntax error, got %v", err)
			case !c.syntax && !errors.As(err, &ce):
				t.Fatalf("want a conversion error, got %v", err)
			case !c.syntax && !strings.HasPrefix(ce.Reason, c.want):
				t.Fatalf("got %q, want %q", ce.Reason, c.want)
			}
		})
	}
}

func TestDecodeIsLenientWhereMesosIs(t *testing.T) {
	// Integers as strings or numbers, booleans as strings, unknown keys,
	// unknown enum names of optional fields (dropped, then Call validation
	// says the type is missing), Infinity for doubles.
	body := `{"framework_id":{"value":"f"},"type":"FOO","bogus":{"x":[1]},
	  "accept":{"offer_ids":[{"value":"o1"}],"filters":{"refuse_seconds":"2.5"},
	  "operations":[{"type":"LAUNCH","launch":{"task_infos":[{"name":"t","task_id":{"value":"t1"},
	    "agent_id":{"value":"a"},"data":"aGk=","limits":{"cpus":{"value":"Infinity"},"mem":{"value":128}},
	    "command":{"shell":"false","value":"/bin/true"},
	    "kill_policy":{"grace_period":{"nanoseconds":"30000000000"}}}]}}]}}`
	c := &schedulerpb.Call{}
	if err := UnmarshalJSON([]byte(body), c); err != nil {
		t.Fatal(err)
	}
	if c.Type != nil {
		t.Errorf("unknown enum name should be dropped, got %v", c.GetType())
	}
	if got := c.GetAccept().GetFilters().GetRefuseSeconds(); got != 2.5 {
		t.Errorf("refuse_seconds = %v", got)
	}
	task := c.GetAccept().GetOperations()[0].GetLaunch().GetTaskInfos()[0]
	if string(task.GetData()) != "hi" {
		t.Errorf("data = %q", task.GetData())
	}
	if !math.IsInf(task.GetLimits()["cpus"].GetValue(), 1) || task.GetLimits()["mem"].GetValue() != 128 {
		t.Errorf("limits = %v", task.GetLimits())
	}
	if task.GetCommand().GetShell() {
		t.Errorf("shell should be false")
	}
	if task.GetKillPolicy().GetGracePeriod().GetNanoseconds() != 30e9 {
		t.Errorf("grace period = %v", task.GetKillPolicy())
	}
	// A required enum with an unknown name is an error.
	err := UnmarshalJSON([]byte(`{"task_id":{"value":"t"},"state":"TASK_BOGUS"}`), &mesospb.TaskStatus{})
	if err == nil || !strings.Contains(err.Error(), "TASK_BOGUS") {
		t.Errorf("want an error naming TASK_BOGUS, got %v", err)
	}
	// Integer overflow is an error, not a wrap-around.
	err = UnmarshalJSON([]byte(`{"hostname":"h","port":4294967296}`), &mesospb.AgentInfo{})
	if err == nil || !strings.Contains(err.Error(), "port") {
		t.Errorf("want an error naming port, got %v", err)
	}
}

func TestEncodeWritesDefaultsAsMesosDoes(t *testing.T) {
	out, err := MarshalJSON(&schedulerpb.Call{
		FrameworkId: &mesospb.FrameworkID{Value: proto.String("f")},
		Type:        schedulerpb.Call_DECLINE.Enum(),
		Decline: &schedulerpb.Call_Decline{
			OfferIds: []*mesospb.OfferID{{Value: proto.String("o")}},
			Filters:  &mesospb.Filters{},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"framework_id":{"value":"f"},"type":"DECLINE","decline":{"offer_ids":[{"value":"o"}],"filters":{"refuse_seconds":5.0}}}`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	// Deprecated defaults (Resource.role) are not written; explicit ones are.
	r := &mesospb.Resource{Name: proto.String("cpus"), Type: mesospb.Value_SCALAR.Enum(), Scalar: &mesospb.Value_Scalar{Value: proto.Float64(0.25)}}
	out, _ = MarshalJSON(r)
	if want := `{"name":"cpus","type":"SCALAR","scalar":{"value":0.25}}`; string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	// Missing required fields are refused on output too.
	if _, err := MarshalJSON(&mesospb.TaskID{}); err == nil {
		t.Errorf("want an error for a TaskID without value")
	}
}

func TestEncodeEscapesStrings(t *testing.T) {
	s := "quote\" backslash\\ nl\n ctl\x01 bad\xff utf8 é"
	out, err := MarshalJSON(&mesospb.Label{Key: proto.String(s)})
	if err != nil {
		t.Fatal(err)
	}
	back := &mesospb.Label{}
	if err := UnmarshalJSON(out, back); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if want := strings.ToValidUTF8(s, "\uFFFD"); back.GetKey() != want {
		t.Errorf("got %q want %q", back.GetKey(), want)
	}
}

func TestProtobufErrors(t *testing.T) {
	// The malformed body of the recordings: 08 ff ff.
	err := Unmarshal(Protobuf, []byte{0x08, 0xff, 0xff}, &schedulerpb.Call{})
	var pe *ProtobufError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v", err)
	}
	// A call whose nested required field is missing names it.
	b, _ := proto.MarshalOptions{AllowPartial: true}.Marshal(&executorpb.Call{
		ExecutorId:  &mesospb.ExecutorID{Value: proto.String("e")},
		FrameworkId: &mesospb.FrameworkID{},
	})
	err = Unmarshal(Protobuf, b, &executorpb.Call{})
	if err == nil || !strings.Contains(err.Error(), "framework_id.value") {
		t.Fatalf("got %v", err)
	}
}

func TestNegotiate(t *testing.T) {
	for _, c := range []struct {
		accept string
		want   Encoding
		ok     bool
	}{
		{"", JSON, true},
		{"*/*", JSON, true},
		{"application/json", JSON, true},
		{"application/x-protobuf", Protobuf, true},
		{"text/html", 0, false},
		{"text/html, application/x-protobuf", Protobuf, true},
		{"application/json;q=0.5, application/x-protobuf", Protobuf, true},
		{"application/json;q=0", 0, false},
	} {
		got, ok := Negotiate(c.accept)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("Negotiate(%q) = %v,%v; want %v,%v", c.accept, got, ok, c.want, c.ok)
		}
	}
	if _, ok := FromContentType("application/json; charset=utf-8"); ok {
		t.Errorf("Mesos refuses a Content-Type with parameters (415)")
	}
	if e, ok := FromContentType("application/x-protobuf"); !ok || e != Protobuf {
		t.Errorf("protobuf content type not recognised")
	}
}
