package etcd

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs etcd until the returned stop is called; stop waits for Run
// to return and fails the test on an error.
func start(t *testing.T, c Config) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- Run(ctx, c, ready) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("etcd ended before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("etcd not ready within 60s")
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("etcd stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("etcd did not stop within 30s")
		}
	}
	t.Cleanup(stop)
	return stop
}

// State written before a stop is there after a start on the same data
// dir (the DC/OS package of k8sm lost it all on every restart).
func TestStateSurvivesRestart(t *testing.T) {
	c := Config{Name: "km", DataDir: filepath.Join(t.TempDir(), "etcd"),
		ClientURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", freePort(t))},
		PeerURL:    fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}
	put := func(key, val string) {
		cli, err := clientv3.New(clientv3.Config{Endpoints: c.ClientURLs, DialTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := cli.Put(ctx, key, val); err != nil {
			t.Fatal(err)
		}
	}
	get := func(key string) string {
		cli, err := clientv3.New(clientv3.Config{Endpoints: c.ClientURLs, DialTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) == 0 {
			return ""
		}
		return string(r.Kvs[0].Value)
	}
	stop := start(t, c)
	put("/registry/namespaces/shop", "kept")
	stop()
	start(t, c)
	if v := get("/registry/namespaces/shop"); v != "kept" {
		t.Fatalf("after a restart the key holds %q", v)
	}
}

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	for _, c := range []struct {
		cfg  Config
		flag string
	}{
		{Config{ClientURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", port)}, PeerURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}, "--listen-client-urls"},
		{Config{ClientURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}, PeerURL: fmt.Sprintf("http://127.0.0.1:%d", port)}, "--listen-peer-urls"},
	} {
		c.cfg.Name, c.cfg.DataDir = "km", t.TempDir()
		err := Run(context.Background(), c.cfg, nil)
		want := fmt.Sprintf("km etcd: port %d on 127.0.0.1 is already in use (another etcd?); choose another with %s", port, c.flag)
		if err == nil || err.Error() != want {
			t.Errorf("got %v, want %q", err, want)
		}
	}
	if err := Run(context.Background(), Config{ClientURLs: []string{"127.0.0.1:2379"}}, nil); err == nil || !strings.Contains(err.Error(), "http://127.0.0.1:2379") {
		t.Errorf("a URL without a scheme: %v", err)
	}
}
