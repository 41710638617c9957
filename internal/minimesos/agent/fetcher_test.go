package agent

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

func tarGz(t *testing.T, files map[string]string) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, content := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg})
		tw.Write([]byte(content))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func uri(v string, mutate ...func(*mesospb.CommandInfo_URI)) *mesospb.CommandInfo_URI {
	u := &mesospb.CommandInfo_URI{Value: proto.String(v)}
	for _, f := range mutate {
		f(u)
	}
	return u
}

// The fetcher brings local files and http(s) URLs into the sandbox, makes
// them executable, extracts archives (tar.gz, zip) and gunzips lone .gz
// files, as Mesos' fetcher does; a failure names the URI.
func TestFetcher(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "tool.sh"), []byte("#!/bin/sh\necho hi\n"), 0o644)
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.Create("z/inside.txt")
	w.Write([]byte("zipped"))
	zw.Close()
	var gzbuf bytes.Buffer
	gw := gzip.NewWriter(&gzbuf)
	gw.Write([]byte("plain"))
	gw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bundle.tar.gz":
			w.Write(tarGz(t, map[string]string{"pkg/readme.txt": "hello"}))
		case "/bundle.zip":
			w.Write(zbuf.Bytes())
		case "/notes.txt.gz":
			w.Write(gzbuf.Bytes())
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	sandbox := t.TempDir()
	err := fetchURIs(context.Background(), []*mesospb.CommandInfo_URI{
		uri(filepath.Join(src, "tool.sh"), func(u *mesospb.CommandInfo_URI) { u.Executable = proto.Bool(true) }),
		uri(srv.URL + "/bundle.tar.gz"),
		uri(srv.URL + "/bundle.zip"),
		uri(srv.URL + "/notes.txt.gz"),
		uri(srv.URL+"/bundle.tar.gz", func(u *mesospb.CommandInfo_URI) {
			u.Extract = proto.Bool(false)
			u.OutputFile = proto.String("kept/as-is.tgz")
		}),
		uri("file://"+filepath.Join(src, "tool.sh"), func(u *mesospb.CommandInfo_URI) { u.OutputFile = proto.String("copy.sh") }),
	}, sandbox)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(sandbox, "tool.sh")); err != nil || st.Mode()&0o111 == 0 {
		t.Errorf("executable not set: %v %v", st, err)
	}
	if st, _ := os.Stat(filepath.Join(sandbox, "copy.sh")); st == nil || st.Mode()&0o111 != 0 {
		t.Errorf("copy.sh should not be executable: %v", st)
	}
	for f, want := range map[string]string{"pkg/readme.txt": "hello", "z/inside.txt": "zipped", "notes.txt": "plain", "copy.sh": "#!/bin/sh\necho hi\n"} {
		if b, err := os.ReadFile(filepath.Join(sandbox, f)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v", f, b, err)
		}
	}
	// Archives stay next to what they held; extract=false keeps them whole.
	for _, f := range []string{"bundle.tar.gz", "bundle.zip", "kept/as-is.tgz"} {
		if _, err := os.Stat(filepath.Join(sandbox, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}

	for _, c := range []struct {
		uri  *mesospb.CommandInfo_URI
		want []string
	}{
		{uri(srv.URL + "/missing.tgz"), []string{"Failed to fetch '" + srv.URL + "/missing.tgz'", "404"}},
		{uri(filepath.Join(src, "nope")), []string{"Failed to fetch '" + filepath.Join(src, "nope") + "'", "no such file"}},
		{uri("relative/path"), []string{"Failed to fetch 'relative/path'", "absolute paths"}},
	} {
		err := fetchURIs(context.Background(), []*mesospb.CommandInfo_URI{c.uri}, sandbox)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("fetching %s: %v, want %q", c.uri.GetValue(), err, w)
			}
		}
	}
	// An archive may not write outside the sandbox, directly or through a
	// link.
	for name, hdrs := range map[string][]tar.Header{
		"dotdot.tar":  {{Name: "../escape", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}},
		"symlink.tar": {{Name: "etc", Linkname: "/etc", Typeflag: tar.TypeSymlink}, {Name: "etc/evil", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range hdrs {
			h := h
			tw.WriteHeader(&h)
			if h.Typeflag == tar.TypeReg {
				tw.Write([]byte("x"))
			}
		}
		tw.Close()
		os.WriteFile(filepath.Join(src, name), buf.Bytes(), 0o644)
		if err := fetchURIs(context.Background(), []*mesospb.CommandInfo_URI{uri(filepath.Join(src, name))}, t.TempDir()); err == nil || !strings.Contains(err.Error(), "outside the sandbox") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A task's URIs are in its sandbox before it starts; a URI that cannot be
// fetched fails the task with REASON_CONTAINER_LAUNCH_FAILED, naming it.
func TestFetchBeforeLaunch(t *testing.T) {
	m := newFakeMaster(t)
	a := startAgent(t, testConfig(t, m, t.TempDir()))
	waitFor(t, "registered", a.Registered)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/app.tar.gz" {
			w.Write(tarGz(t, map[string]string{"app/run.sh": "#!/bin/sh\necho fetched and run\n"}))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	ok := taskInfo("t-fetch", a.ID())
	ok.Command = &mesospb.CommandInfo{Value: proto.String("./app/run.sh"), Uris: []*mesospb.CommandInfo_URI{uri(srv.URL + "/app.tar.gz")}}
	m.send(runTaskEvent(frameworkInfo("fw"), ok))
	bad := taskInfo("t-nofetch", a.ID())
	bad.Command = &mesospb.CommandInfo{Value: proto.String("true"), Uris: []*mesospb.CommandInfo_URI{uri(srv.URL + "/gone.tar.gz")}}
	m.send(runTaskEvent(frameworkInfo("fw"), bad))

	m.waitUpdate(t, "t-fetch", mesospb.TaskState_TASK_FINISHED)
	out, _ := os.ReadFile(filepath.Join(a.dir, "slaves", a.ID(), "frameworks", "fw", "executors", "t-fetch", "runs", "latest", "stdout"))
	if string(out) != "fetched and run\n" {
		t.Errorf("stdout %q", out)
	}
	st := m.waitUpdate(t, "t-nofetch", mesospb.TaskState_TASK_FAILED)
	if st.GetReason() != mesospb.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED || st.GetSource() != mesospb.TaskStatus_SOURCE_AGENT ||
		!strings.Contains(st.GetMessage(), srv.URL+"/gone.tar.gz") || !strings.Contains(st.GetMessage(), "404") {
		t.Errorf("TASK_FAILED %v", st)
	}
}
