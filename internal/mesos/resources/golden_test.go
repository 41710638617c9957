package resources

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
)

// What a real Mesos 1.11 agent started with these flags offered, and what
// the master said about a task that did not fit
// (testdata/mesos-recordings/README.md).
const (
	recordings       = "../../../testdata/mesos-recordings"
	recordedAgent    = "cpus:4;mem:4096;disk:1000;ports:[31000-32000]"
	recordedAttrs    = "rack:r1;zone:a"
	tooBigMessageFmt = "Total resources %s required by task and its executor is more than available %s"
)

var recordedEvent = regexp.MustCompile(`^\d+\\n(\{.*\})$`)

// recordedSession returns, in order, the events Mesos sent and the
// ACCEPT calls the frameworks made in the JSON session.
func recordedSession(t *testing.T) (session []proto.Message) {
	f, err := os.Open(filepath.Join(recordings, "scheduler-json-session.txt"))
	if err != nil {
		t.Fatalf("golden recording missing: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	opts := protojson.UnmarshalOptions{DiscardUnknown: true}
	for sc.Scan() {
		line := sc.Text()
		var msg proto.Message
		if m := recordedEvent.FindStringSubmatch(line); m != nil {
			line, msg = m[1], &schedulerpb.Event{}
		} else if strings.HasPrefix(line, `{"framework_id"`) && strings.Contains(line, `"type": "ACCEPT"`) {
			msg = &schedulerpb.Call{}
		} else {
			continue
		}
		if err := opts.Unmarshal([]byte(line), msg); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		session = append(session, msg)
	}
	return session
}

func TestRecordedOffers(t *testing.T) {
	agent := mustParse(t, recordedAgent)
	attrs, err := ParseAttributes(recordedAttrs)
	if err != nil {
		t.Fatal(err)
	}
	session := recordedSession(t)
	messages := map[string]string{} // the last word on each task
	for _, msg := range session {
		if ev, ok := msg.(*schedulerpb.Event); ok && ev.GetUpdate() != nil {
			st := ev.GetUpdate().GetStatus()
			messages[st.GetTaskId().GetValue()] = st.GetMessage()
		}
	}
	offers := map[string]*mesospb.Offer{} // offer IDs repeat: the recording has several runs
	var first *mesospb.Offer
	launches := 0
	for _, msg := range session {
		if call, ok := msg.(*schedulerpb.Call); ok {
			launches += checkRecordedLaunch(t, offers, call, messages)
			continue
		}
		for _, o := range msg.(*schedulerpb.Event).GetOffers().GetOffers() {
			offers[o.GetId().GetValue()] = o
			if first == nil {
				first = o
			}
			res := o.GetResources()
			role := o.GetAllocationInfo().GetRole() // set for MULTI_ROLE frameworks only
			if !Contains(WithAllocationRole(agent, role), res) || AllocationRole(res) != role {
				t.Errorf("offer %s is not part of the agent: %s", o.GetId().GetValue(), Describe(res))
			}
			if again := mustParse(t, String(res)); !Equal(again, WithAllocationRole(res, "")) {
				t.Errorf("offer %s: String %q does not parse back", o.GetId().GetValue(), String(res))
			}
			if len(o.GetAttributes()) != len(attrs) || !proto.Equal(o.GetAttributes()[0], attrs[0]) || !proto.Equal(o.GetAttributes()[1], attrs[1]) {
				t.Errorf("attributes %v, parsed %v", o.GetAttributes(), attrs)
			}
		}
	}
	if first == nil || launches < 4 {
		t.Fatalf("the recording has no offers or too few launches (%d)", launches)
	}
	// The first offer is the whole agent, in Mesos' order.
	if got, want := Describe(first.GetResources()), "ports(allocated: *):[31000-32000]; cpus(allocated: *):4; mem(allocated: *):4096; disk(allocated: *):1000"; got != want {
		t.Errorf("first offer %s, want %s", got, want)
	}
	if !Equal(first.GetResources(), WithAllocationRole(agent, "*")) {
		t.Errorf("first offer is not the agent's resources")
	}
}

// checkRecordedLaunch: each task Mesos launched fits its offer; the one
// that did not fit got TASK_ERROR with Mesos' message, which Describe
// reproduces.
func checkRecordedLaunch(t *testing.T, offers map[string]*mesospb.Offer, call *schedulerpb.Call, messages map[string]string) (checked int) {
	offer := offers[call.GetAccept().GetOfferIds()[0].GetValue()]
	for _, op := range call.GetAccept().GetOperations() {
		for _, task := range op.GetLaunch().GetTaskInfos() {
			id, res := task.GetTaskId().GetValue(), task.GetResources()
			if offer == nil || strings.Contains(messages[id], "invalid offers") {
				continue
			}
			// Mesos puts the offer's allocation role on resources that
			// lack it (t-noalloc ran).
			if AllocationRole(res) == "" {
				res = WithAllocationRole(res, offer.GetAllocationInfo().GetRole())
			}
			checked++
			if id == "t-too-big" {
				want := fmt.Sprintf(tooBigMessageFmt, Describe(res), Describe(offer.GetResources()))
				if Contains(offer.GetResources(), res) || messages[id] != want {
					t.Errorf("t-too-big: recorded message\n %s\nDescribe gives\n %s", messages[id], want)
				}
				continue
			}
			rest, err := SubtractChecked(offer.GetResources(), res)
			if err != nil {
				t.Errorf("task %s does not fit its offer: %v", id, err)
				continue
			}
			// As Mesos offered what was left while the task ran.
			left := WithAllocationRole(mustParse(t, "ports:[31000-32000];cpus:3.9;mem:4064;disk:1000"), offer.GetAllocationInfo().GetRole())
			if got, want := Describe(rest), Describe(left); Cpus(offer.GetResources()) == 4 && got != want {
				t.Errorf("%s: offer minus task %s, want %s", id, got, want)
			}
		}
	}
	return checked
}
