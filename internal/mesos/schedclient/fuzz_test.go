package schedclient

import (
	"net/url"
	"testing"

	"github.com/k8sm/k8sm/internal/mesos/codec"
)

// FuzzDecodeEvent: whatever a master sends in a record, decoding it either
// gives an event with the payload its type promises or an error that says
// what was wrong; it never panics.
func FuzzDecodeEvent(f *testing.F) {
	for _, r := range jsonStream(f, "scheduler-json-session.txt", "PART A", "stream") {
		f.Add(r, false)
	}
	for _, r := range protoStream(f, "proto") {
		f.Add(r, true)
	}
	f.Add([]byte(`{"type":"UPDATE"}`), false)
	f.Fuzz(func(t *testing.T, rec []byte, protobuf bool) {
		enc := codec.JSON
		if protobuf {
			enc = codec.Protobuf
		}
		ev, err := decodeEvent(enc, rec)
		if err != nil {
			if ev != nil || err.Error() == "" {
				t.Fatalf("error %q with event %v", err, ev)
			}
			return
		}
		if ev == nil {
			t.Fatal("no event and no error")
		}
	})
}

// FuzzRedirect: any Location header gives an http(s) URL with a host, or an
// error.
func FuzzRedirect(f *testing.F) {
	for _, s := range []string{"//m2:5050/api/v1/scheduler", "", "http://m", "//:1", "/x", "//[::1]:5050", "%zz"} {
		f.Add(s)
	}
	from, _ := url.Parse("http://m1:5050/api/v1/scheduler")
	f.Fuzz(func(t *testing.T, loc string) {
		u, err := redirectTarget(from, loc)
		if err != nil {
			return
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.Path == "" {
			t.Fatalf("redirectTarget(%q) = %v", loc, u)
		}
		if _, err := ParseMaster(u.String()); err != nil {
			t.Fatalf("redirectTarget(%q) = %v, which ParseMaster refuses: %v", loc, u, err)
		}
	})
}
