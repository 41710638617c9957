package agent

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

func newTestAgent(t *testing.T) *Agent {
	t.Helper()
	a, err := New(Config{Master: "127.0.0.1:1", WorkDir: t.TempDir(), Resources: "cpus:1;mem:512", KMBinary: "/bin/true"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestBadFlagsQuoteTheBadPart(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Master: "m:1", WorkDir: t.TempDir(), Resources: "cpus:four"}, `--resources: bad resource "cpus:four": value "four" is not a number`},
		{Config{Master: "m:1", WorkDir: t.TempDir(), Resources: "cpus:1", Attributes: "rack"}, `--attributes: bad attribute "rack"`},
		{Config{WorkDir: t.TempDir()}, "--master is required"},
		{Config{Master: "m:1"}, "--work_dir is required"},
		{Config{Master: "m:1", WorkDir: t.TempDir(), IP: "nope"}, `--ip "nope" is not an IP address`},
	} {
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
	a := newTestAgent(t)
	if got := a.total; len(got) != 3 {
		t.Errorf("default ports are added to the resources: %v", got)
	}
}

// The executor API answers as a real Mesos 1.11 agent did
// (testdata/mesos-recordings/executor-session.txt).
func TestExecutorAPIErrors(t *testing.T) {
	a := newTestAgent(t)
	fi := &mesospb.FrameworkInfo{User: proto.String("root"), Name: proto.String("f"), Id: &mesospb.FrameworkID{Value: proto.String("fw")}}
	a.mu.Lock()
	fw := a.frameworkLocked(fi)
	fw.executors["e-py"] = &executor{fwID: "fw", info: &mesospb.ExecutorInfo{ExecutorId: &mesospb.ExecutorID{Value: proto.String("e-py")}}, tasks: map[string]*task{}, state: launching}
	a.mu.Unlock()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	upd := func(fwid, status string) string {
		return `{"type": "UPDATE", "framework_id": {"value": "` + fwid + `"}, "executor_id": {"value": "e-py"}, "update": {"status": ` + status + `}}`
	}
	for _, c := range []struct {
		name, method, ct, body string
		code                   int
		want                   string
	}{
		{"GET", "GET", "", "", 405, "405 Method Not Allowed. Expecting one of { 'POST' }, but received 'GET'."},
		{"no content type", "POST", "", "{}", 400, "Expecting 'Content-Type' to be present"},
		{"text/plain", "POST", "text/plain", "{}", 415, "Expecting 'Content-Type' of application/json or application/x-protobuf"},
		{"malformed", "POST", "application/json", `{"type":`, 400, "Failed to parse body into JSON: "},
		{"no subscribe", "POST", "application/json", `{"type": "SUBSCRIBE", "framework_id": {"value": "fw"}, "executor_id": {"value": "e-py"}}`, 400,
			"Failed to validate Executor::Call: Expecting 'subscribe' to be present"},
		{"staging", "POST", "application/json", upd("fw", `{"task_id": {"value": "t-py"}, "state": "TASK_STAGING", "source": "SOURCE_EXECUTOR", "uuid": "Q4+9scagQMmg5SEgyMIJ7g=="}`), 400,
			"Failed to validate Executor::Call: Received TASK_STAGING from executor e-py of framework fw which is not allowed"},
		{"no uuid", "POST", "application/json", upd("fw", `{"task_id": {"value": "t-py"}, "state": "TASK_RUNNING", "source": "SOURCE_EXECUTOR"}`), 400,
			"Failed to validate Executor::Call: Expecting 'uuid' to be present"},
		{"short uuid", "POST", "application/json", upd("fw", `{"task_id": {"value": "t-py"}, "state": "TASK_RUNNING", "source": "SOURCE_EXECUTOR", "uuid": "YWJj"}`), 400,
			"Failed to validate Executor::Call: Not a valid UUID"},
		{"wrong framework", "POST", "application/json", upd("wrong-fw", `{"task_id": {"value": "t-py"}, "state": "TASK_RUNNING", "source": "SOURCE_EXECUTOR", "uuid": "eTPnUTfVQEypJMAxyrfTBQ=="}`), 400,
			"Framework cannot be found"},
		{"unknown executor", "POST", "application/json", `{"type": "MESSAGE", "framework_id": {"value": "fw"}, "executor_id": {"value": "nope"}, "message": {"data": "aGk="}}`, 400,
			"Executor cannot be found"},
		{"not subscribed", "POST", "application/json", upd("fw", `{"task_id": {"value": "t-py"}, "state": "TASK_RUNNING", "source": "SOURCE_EXECUTOR", "uuid": "eTPnUTfVQEypJMAxyrfTBQ=="}`), 403,
			"Executor is not subscribed"},
		{"heartbeat", "POST", "application/json", `{"type": "HEARTBEAT", "framework_id": {"value": "x"}, "executor_id": {"value": "y"}}`, 202, ""},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+"/api/v1/executor", strings.NewReader(c.body))
		if c.ct != "" {
			req.Header.Set("Content-Type", c.ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.HasPrefix(string(b), c.want) {
			t.Errorf("%s: %d %q, want %d %q", c.name, resp.StatusCode, b, c.code, c.want)
		}
	}
}

func TestAgentIDCheckpoint(t *testing.T) {
	dir := t.TempDir()
	a, _ := New(Config{Master: "m:1", WorkDir: dir, Resources: "cpus:1;mem:512", KMBinary: "/bin/true"})
	a.saveAgentID("abc-S7")
	b, _ := New(Config{Master: "m:1", WorkDir: dir, Resources: "cpus:1;mem:512", KMBinary: "/bin/true"})
	if b.ID() != "abc-S7" || b.registerCall().GetAgentId().GetValue() != "abc-S7" {
		t.Fatalf("a restarted agent registers with its checkpointed ID, got %q", b.ID())
	}
	b.forgetAgentID()
	c, _ := New(Config{Master: "m:1", WorkDir: dir, Resources: "cpus:1;mem:512", KMBinary: "/bin/true"})
	if c.ID() != "" {
		t.Fatalf("forgotten ID came back: %q", c.ID())
	}
}

func TestFetcher(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "tool.sh"), []byte("#!/bin/sh\necho hi\n"), 0o644)
	var tgz bytes.Buffer
	gz := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(gz)
	tw.WriteHeader(&tar.Header{Name: "pkg/readme.txt", Mode: 0o644, Size: 5, Typeflag: tar.TypeReg})
	tw.Write([]byte("hello"))
	tw.Close()
	gz.Close()
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.Create("z/inside.txt")
	w.Write([]byte("zipped"))
	zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bundle.tar.gz":
			w.Write(tgz.Bytes())
		case "/bundle.zip":
			w.Write(zbuf.Bytes())
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	sandbox := t.TempDir()
	err := fetchURIs(context.Background(), []*mesospb.CommandInfo_URI{
		{Value: proto.String(filepath.Join(src, "tool.sh")), Executable: proto.Bool(true)},
		{Value: proto.String(srv.URL + "/bundle.tar.gz")},
		{Value: proto.String(srv.URL + "/bundle.zip")},
		{Value: proto.String("file://" + filepath.Join(src, "tool.sh")), OutputFile: proto.String("copy.sh"), Extract: proto.Bool(false)},
	}, sandbox)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(sandbox, "tool.sh")); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("executable not set: %v %v", st, err)
	}
	for f, want := range map[string]string{"pkg/readme.txt": "hello", "z/inside.txt": "zipped", "copy.sh": "#!/bin/sh\necho hi\n"} {
		if b, err := os.ReadFile(filepath.Join(sandbox, f)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v", f, b, err)
		}
	}
	err = fetchURIs(context.Background(), []*mesospb.CommandInfo_URI{{Value: proto.String(srv.URL + "/missing.tgz")}}, sandbox)
	if err == nil || !strings.Contains(err.Error(), "missing.tgz") || !strings.Contains(err.Error(), "404") {
		t.Fatalf("got %v", err)
	}
	// An archive may not write outside the sandbox.
	var evil bytes.Buffer
	tw = tar.NewWriter(&evil)
	tw.WriteHeader(&tar.Header{Name: "../escape", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	os.WriteFile(filepath.Join(src, "evil.tar"), evil.Bytes(), 0o644)
	if err := fetchURIs(context.Background(), []*mesospb.CommandInfo_URI{{Value: proto.String(filepath.Join(src, "evil.tar"))}}, sandbox); err == nil {
		t.Fatal("path traversal accepted")
	}
}
