package masterstate

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/k8sm/k8sm/internal/mesos/resources"
)

// The agent list a real Mesos 1.11 master served.
func TestParseRecording(t *testing.T) {
	f, err := os.Open("../../../testdata/mesos-recordings/master-slaves.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	agents, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(agents) != 1 {
		t.Fatalf("%d agents", len(agents))
	}
	a := agents[0]
	if a.ID != "d9097ce5-55bd-48f9-a8ba-fe84abe1c220-S0" || a.Hostname != "localhost" || a.IP != "127.0.0.1" || a.Port != 5051 || !a.Active {
		t.Fatalf("%+v", a)
	}
	want, _ := resources.Parse("cpus:4;mem:4096;disk:1000;gpus:0;ports:[31000-32000]", "*")
	if !resources.Equal(a.Resources, want) {
		t.Fatalf("resources %s, want %s", resources.String(a.Resources), resources.String(want))
	}
	if got := resources.AttributesString(a.Attributes); got != "rack:r1;zone:a" {
		t.Fatalf("attributes %q", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`<html>`, "not the JSON Mesos serves"},
		{`{"slaves":[{"hostname":"x"}]}`, "without an id"},
		{`{"slaves":[{"id":"S1","resources":{"cpus":"four"}}]}`, "agent S1: resources"},
		{`{"slaves":[{"id":"S1","resources":{"cpus":[1]}}]}`, "neither a number nor a string"},
		{`{"slaves":[{"id":"S1","attributes":{"a;b":"c"}}]}`, "agent S1: attributes"},
	} {
		_, err := Parse(strings.NewReader(tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.body, err, tc.want)
		}
	}
}

func TestClient(t *testing.T) {
	body, err := os.ReadFile("../../../testdata/mesos-recordings/master-slaves.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slaves" {
			http.Error(w, "no such endpoint", http.StatusNotFound)
			return
		}
		w.Write(body)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL + "/api/v1/scheduler")
	agents, err := Client{}.Agents(context.Background(), u)
	if err != nil || len(agents) != 1 {
		t.Fatalf("%v %v", agents, err)
	}
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not the leader", http.StatusServiceUnavailable)
	})
	if _, err := (Client{}).Agents(context.Background(), u); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("got %v", err)
	}
}

func FuzzParse(f *testing.F) {
	body, _ := os.ReadFile("../../../testdata/mesos-recordings/master-slaves.json")
	f.Add(body)
	f.Add([]byte(`{"slaves":[{"id":"S1","pid":"slave(1)@[::1]:5051","resources":{"ports":"[1-2, 5-9]","cpus":1e3}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		agents, err := Parse(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, a := range agents {
			if a.ID == "" {
				t.Fatal("agent without id accepted")
			}
			// What parsed prints back to what parses to the same.
			again, err := resources.Parse(resources.String(a.Resources), "*")
			if err != nil || !resources.Equal(again, a.Resources) {
				t.Fatalf("resources %s do not round-trip: %v", resources.String(a.Resources), err)
			}
		}
	})
}
