package execclient

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/executorpb"
)

// The recordings are what a real Apache Mesos 1.11 agent sent and accepted
// on the wire (testdata/mesos-recordings/README.md).
const recordings = "../../../testdata/mesos-recordings"

func recordingLines(t testing.TB, name string) []string {
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
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// recRequest is one executor API request of the recording and the agent's
// answer.
type recRequest struct {
	title    string
	method   string
	path     string
	header   http.Header
	body     string
	status   int
	respBody string
}

// recStep is one thing that happened on an executor's connections: a
// request it made, or an event the agent sent on its stream.
type recStep struct {
	req   *recRequest
	event []byte // the record's payload, verbatim JSON
}

// recSession is one executor's life: its SUBSCRIBE and everything after.
type recSession struct {
	subscribe *recRequest
	steps     []recStep
}

func (s recSession) events() [][]byte {
	var out [][]byte
	for _, st := range s.steps {
		if st.event != nil {
			out = append(out, st.event)
		}
	}
	return out
}

var (
	recTitle   = regexp.MustCompile(`^== \[t\+[0-9.]+s\] (.*)$`)
	recRecord  = regexp.MustCompile(`^(\d+)\\n(.*)$`)
	recReqLine = regexp.MustCompile(`^([A-Z]+) (\S+) HTTP/1\.1$`)
	recStatus  = regexp.MustCompile(`^HTTP/1\.1 (\d{3}) `)
)

// executorRecording parses executor-session.txt: the sessions of the two
// recorded executors (e-py, e-py-kill), and the calls made from outside any
// executor (the EXTRA part).
func executorRecording(t testing.TB) (sessions []recSession, extra []*recRequest) {
	t.Helper()
	lines := recordingLines(t, "executor-session.txt")
	part, title := "", ""
	var cur *recSession
	readHeaders := func(i int) (http.Header, int) {
		h := http.Header{}
		for ; i < len(lines) && lines[i] != ""; i++ {
			k, v, _ := strings.Cut(lines[i], ": ")
			h.Add(k, v)
		}
		return h, i + 1
	}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "### "):
			part = l
		case recTitle.MatchString(l):
			title = recTitle.FindStringSubmatch(l)[1]
		case strings.Contains(l, "stream 'executor' RecordIO record"):
			m := recRecord.FindStringSubmatch(lines[i+1])
			if m == nil {
				t.Fatalf("executor-session.txt:%d: no record after the record header", i+2)
			}
			// The executor stream's payloads were re-serialized by the
			// recorder, so their lengths are not the announced ones
			// (the codec's golden test says the same); only the JSON is
			// used, framed anew.
			if cur == nil {
				t.Fatalf("executor-session.txt:%d: an event before any SUBSCRIBE", i+2)
			}
			cur.steps = append(cur.steps, recStep{event: []byte(m[2])})
			i++
		case l == ">>> REQUEST":
			m := recReqLine.FindStringSubmatch(lines[i+1])
			if m == nil || !strings.HasSuffix(m[2], "/api/v1/executor") {
				continue // the scheduler's side
			}
			r := &recRequest{title: title, method: m[1], path: m[2]}
			r.header, i = readHeaders(i + 2)
			if i < len(lines) && strings.HasPrefix(lines[i], "{") {
				r.body = lines[i]
			}
			for i < len(lines) && !strings.HasPrefix(lines[i], "<<< RESPONSE") {
				i++
			}
			sm := recStatus.FindStringSubmatch(lines[i+1])
			if sm == nil {
				t.Fatalf("executor-session.txt:%d: no status line", i+2)
			}
			r.status, _ = strconv.Atoi(sm[1])
			_, i = readHeaders(i + 2)
			if r.status != http.StatusOK && i < len(lines) && lines[i] != "(empty body)" {
				r.respBody = lines[i]
			}
			i--
			switch {
			case strings.HasPrefix(part, "### EXTRA"):
				extra = append(extra, r)
			case r.status == http.StatusOK:
				sessions = append(sessions, recSession{subscribe: r})
				cur = &sessions[len(sessions)-1]
			case cur != nil:
				cur.steps = append(cur.steps, recStep{req: r})
			}
		}
	}
	if len(sessions) != 2 || len(extra) == 0 {
		t.Fatalf("executor-session.txt: found %d sessions and %d extra calls; expected 2 and some", len(sessions), len(extra))
	}
	return sessions, extra
}

// recordedEvent decodes a recorded event (checking that the recording is
// what this package's codec reads).
func recordedEvent(t testing.TB, raw []byte) *executorpb.Event {
	t.Helper()
	ev := &executorpb.Event{}
	if err := codec.UnmarshalJSON(raw, ev); err != nil {
		t.Fatalf("recorded event %s: %v", raw, err)
	}
	return ev
}

func recordedCall(t testing.TB, body string) *executorpb.Call {
	t.Helper()
	call := &executorpb.Call{}
	if err := codec.UnmarshalJSON([]byte(body), call); err != nil {
		t.Fatalf("recorded call %s: %v", body, err)
	}
	return call
}

// recordedEnvironments are the executor environments a real Mesos 1.11 agent
// set: env.txt of the shell-script executor and the command task's
// environment from executor-environment.txt, and the two Python executors'
// from executor-session.txt (JSON; null = not set).
func recordedEnvironments(t testing.TB) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	var cur map[string]string
	for _, l := range recordingLines(t, "executor-environment.txt") {
		switch {
		case strings.HasPrefix(l, "--- env.txt"):
			cur = map[string]string{}
			out["e-shell"] = cur
		case strings.HasPrefix(l, "--- sandbox 'stdout' (the output of env | sort"):
			cur = map[string]string{}
			out["t-env"] = cur
		case cur != nil && (strings.HasPrefix(l, "---") || l == ""):
			cur = nil
		case cur != nil:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("executor-environment.txt: %q is not NAME=value", l)
			}
			cur[k] = v
		}
	}
	lines := recordingLines(t, "executor-session.txt")
	for i := 0; i < len(lines); i++ {
		if lines[i] != "# Selected environment it got: {" {
			continue
		}
		js := "{"
		for i++; lines[i] != "# }"; i++ {
			js += strings.TrimPrefix(lines[i], "#")
		}
		var m map[string]*string
		if err := json.Unmarshal([]byte(js+"}"), &m); err != nil {
			t.Fatalf("executor-session.txt:%d: %v", i, err)
		}
		env := map[string]string{}
		for k, v := range m {
			if v != nil {
				env[k] = *v
			}
		}
		out[env["MESOS_EXECUTOR_ID"]] = env
	}
	for _, id := range []string{"e-shell", "t-env", "e-py", "e-py-kill"} {
		if len(out[id]) == 0 {
			t.Fatalf("the recorded environment of %s was not found", id)
		}
	}
	return out
}
