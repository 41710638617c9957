package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHandWrittenJSONClient drives the master as a user with curl would:
// nothing but net/http, encoding/json and a few lines of RecordIO
// parsing. It subscribes, gets an offer, launches a command task, sees
// TASK_RUNNING and TASK_FINISHED, and acknowledges them.
func TestHandWrittenJSONClient(t *testing.T) {
	c := newCluster(t, masterDefaults())
	c.addAgent("cpus:2;mem:1024;ports:[31000-31100]")
	url := "http://" + c.addr + "/api/v1/scheduler"

	sub := `{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"root","name":"curl"}}}`
	req, _ := http.NewRequest("POST", url, strings.NewReader(sub))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %s", resp.Status)
	}
	streamID := resp.Header.Get("Mesos-Stream-Id")
	events := make(chan map[string]any, 100)
	go func() {
		r := bufio.NewReader(resp.Body)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				close(events)
				return
			}
			n, _ := strconv.Atoi(strings.TrimSpace(line))
			buf := make([]byte, n)
			if _, err := io.ReadFull(r, buf); err != nil {
				close(events)
				return
			}
			var ev map[string]any
			json.Unmarshal(buf, &ev)
			events <- ev
		}
	}()
	next := func(typ string) map[string]any {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("stream ended waiting for %s", typ)
				}
				if ev["type"] == typ {
					return ev
				}
			case <-timeout:
				t.Fatalf("no %s", typ)
			}
		}
	}
	call := func(body string) {
		t.Helper()
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Mesos-Stream-Id", streamID)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("%s -> %s %s", body, resp.Status, b)
		}
	}
	subscribed := next("SUBSCRIBED")["subscribed"].(map[string]any)
	fwID := subscribed["framework_id"].(map[string]any)["value"].(string)
	offer := next("OFFERS")["offers"].(map[string]any)["offers"].([]any)[0].(map[string]any)
	offerID := offer["id"].(map[string]any)["value"].(string)
	agentID := offer["agent_id"].(map[string]any)["value"].(string)

	call(fmt.Sprintf(`{"framework_id":{"value":%q},"type":"ACCEPT","accept":{"offer_ids":[{"value":%q}],
	  "operations":[{"type":"LAUNCH","launch":{"task_infos":[{"name":"hi","task_id":{"value":"t-echo"},"agent_id":{"value":%q},
	  "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.1}},{"name":"mem","type":"SCALAR","scalar":{"value":32}}],
	  "command":{"value":"echo hi; sleep 1"}}]}}]}}`, fwID, offerID, agentID))

	var seen []string
	for len(seen) == 0 || seen[len(seen)-1] != "TASK_FINISHED" {
		up := next("UPDATE")["update"].(map[string]any)["status"].(map[string]any)
		state := up["state"].(string)
		seen = append(seen, state)
		if u, ok := up["uuid"].(string); ok {
			call(fmt.Sprintf(`{"framework_id":{"value":%q},"type":"ACKNOWLEDGE","acknowledge":{"agent_id":{"value":%q},"task_id":{"value":"t-echo"},"uuid":%q}}`, fwID, agentID, u))
		}
		if state == "TASK_FINISHED" && up["message"] != "Command exited with status 0" {
			t.Fatalf("finished with %v", up["message"])
		}
		if len(seen) > 5 {
			t.Fatalf("states %v", seen)
		}
	}
	if strings.Join(seen, ",") != "TASK_STARTING,TASK_RUNNING,TASK_FINISHED" {
		t.Fatalf("states %v", seen)
	}
}
