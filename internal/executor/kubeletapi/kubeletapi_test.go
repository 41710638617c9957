package kubeletapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type fakePod struct {
	dir     string
	runs    int32
	running bool
}

func (p *fakePod) Namespace() string { return "ns" }
func (p *fakePod) Name() string      { return "p" }
func (p *fakePod) LogPath(c string, run int32) string {
	return filepath.Join(p.dir, c+"-"+string(rune('0'+run))+".log")
}
func (p *fakePod) Restarts(c string) (int32, bool) { return p.runs, c == "c" }
func (p *fakePod) Running(string) bool             { return p.running }

type fakePods struct{ pod *fakePod }

func (f fakePods) Find(ns, name string) Pod {
	if ns == "ns" && name == "p" {
		return f.pod
	}
	return nil
}

func writeCRILog(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String()
}

func TestContainerLogs(t *testing.T) {
	dir := t.TempDir()
	pod := &fakePod{dir: dir, runs: 1}
	writeCRILog(t, pod.LogPath("c", 0), "2026-11-22T10:00:00.000000000Z stdout F old run")
	writeCRILog(t, pod.LogPath("c", 1),
		"2026-11-22T10:00:01.000000000Z stdout F one",
		"2026-11-22T10:00:02.000000000Z stderr P tw",
		"2026-11-22T10:00:02.500000000Z stderr F o",
		"2026-11-22T10:00:03.000000000Z stdout F three")
	h := Handler(fakePods{pod})
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/containerLogs/ns/p/c", 200, "one\ntwo\nthree\n"},
		{"/containerLogs/ns/p/c?tailLines=1", 200, "three\n"},
		{"/containerLogs/ns/p/c?tailLines=0", 200, ""},
		{"/containerLogs/ns/p/c?previous=true", 200, "old run\n"},
		{"/containerLogs/ns/p/c?timestamps=true&tailLines=1", 200, "2026-11-22T10:00:03Z three\n"},
		{"/containerLogs/ns/p/c?sinceTime=2026-11-22T10:00:02Z", 200, "two\nthree\n"},
		{"/containerLogs/ns/p/c?limitBytes=6", 200, "one\ntw"},
		{"/containerLogs/ns/p/c?tailLines=x", 400, "tailLines must be a whole number"},
		{"/containerLogs/ns/p/c?sinceSeconds=-1", 400, "sinceSeconds must be a positive number"},
		{"/containerLogs/ns/p/c?sinceTime=yesterday", 400, "sinceTime must be RFC 3339"},
		{"/containerLogs/ns/p/other", 400, `container "other" is not in pod ns/p`},
		{"/containerLogs/ns/q/c", 404, "pod ns/q is not running on this node"},
		{"/containerLogs/ns/p", 400, "expected /containerLogs/{namespace}/{pod}/{container}"},
	} {
		code, body := get(t, h, tc.path)
		if code != tc.code || (tc.code == 200 && body != tc.body) || (tc.code != 200 && !strings.Contains(body, tc.body)) {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, code, body, tc.code, tc.body)
		}
	}
	pod.runs = 0
	if code, body := get(t, h, "/containerLogs/ns/p/c?previous=true"); code != 400 || !strings.Contains(body, "previous terminated container") {
		t.Errorf("previous of a first run: %d %q", code, body)
	}
}

// TestFollowEndsWithTheContainer: follow streams what is appended and
// ends once the container stops.
func TestFollowEndsWithTheContainer(t *testing.T) {
	dir := t.TempDir()
	pod := &fakePod{dir: dir, running: true}
	path := pod.LogPath("c", 0)
	writeCRILog(t, path, "2026-11-22T10:00:01.000000000Z stdout F first")
	srv := httptest.NewServer(Handler(fakePods{pod}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/containerLogs/ns/p/c?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first\n" {
		t.Fatalf("first line: %q %v", buf, err)
	}
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("2026-11-22T10:00:02.000000000Z stdout F second\n")
	f.Close()
	buf = make([]byte, 7)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "second\n" {
		t.Fatalf("appended line: %q %v", buf, err)
	}
	pod.running = false
	rest, err := io.ReadAll(resp.Body)
	if err != nil || len(rest) != 0 {
		t.Fatalf("after the container stopped: %q %v; want the stream to end", rest, err)
	}
}

// certs for the authentication test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) client(t *testing.T, cn string, orgs ...string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestOnlyTheAPIServerReadsLogs(t *testing.T) {
	dir := t.TempDir()
	pod := &fakePod{dir: dir}
	writeCRILog(t, pod.LogPath("c", 0), "2026-11-22T10:00:01.000000000Z stdout F secret")
	ca, stranger := newCA(t, "cluster-ca"), newCA(t, "other-ca")

	srv := httptest.NewUnstartedServer(Authorize(Handler(fakePods{pod})))
	cfg, err := SelfSignedTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := RequireClientCerts(cfg, ca.pem); err != nil {
		t.Fatal(err)
	}
	srv.TLS = cfg
	srv.StartTLS()
	defer srv.Close()
	if err := RequireClientCerts(&tls.Config{}, []byte("not a certificate")); err == nil {
		t.Error("RequireClientCerts accepted a CA without a certificate")
	}

	client := func(certs ...tls.Certificate) *http.Client {
		// The serving certificate is self-signed, as the kubelet's is by
		// default; the apiserver does not verify it either.
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: certs}}}
	}
	forced := func(cert tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}}}
	}
	do := func(c *http.Client, path string) (int, string, error) {
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	const logs = "/containerLogs/ns/p/c"
	for _, tc := range []struct {
		name  string
		c     *http.Client
		path  string
		code  int
		body  string
		noTLS bool
	}{
		{"no certificate: healthz", client(), "/healthz", 200, "ok", false},
		{"no certificate: logs", client(), logs, 401, "needs a client certificate", false},
		{"a user of the cluster CA", client(ca.client(t, "alice", "developers")), logs, 403, "Forbidden (user=alice", false},
		{"the apiserver", client(ca.client(t, APIServerClientCN, "system:masters")), logs, 200, "secret\n", false},
		{"system:masters", client(ca.client(t, "admin", "system:masters")), logs, 200, "secret\n", false},
		// Go's client offers no certificate the server's CA list does not
		// name; either way, another CA's certificate gets nothing.
		{"another CA's certificate", client(stranger.client(t, APIServerClientCN, "system:masters")), logs, 401, "needs a client certificate", false},
		{"another CA's certificate, forced", forced(stranger.client(t, APIServerClientCN, "system:masters")), logs, 0, "", true},
	} {
		code, body, err := do(tc.c, tc.path)
		if tc.noTLS {
			if err == nil {
				t.Errorf("%s: served (%d %q); the handshake must fail", tc.name, code, body)
			}
			continue
		}
		if err != nil || code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("%s: %d %q %v, want %d %q", tc.name, code, body, err, tc.code, tc.body)
		}
	}
}

// TestStreamingRequestsRefused: what exec, port-forward and attach refuse
// before any upgrade, with a message that says why.
func TestStreamingRequestsRefused(t *testing.T) {
	h := Handler(fakePods{&fakePod{dir: t.TempDir()}})
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/exec/ns/p", 400, "expected /exec/{namespace}/{pod}/{container}"},
		{"/exec/ns/q/c?command=ls&output=1", 404, "pod ns/q is not running on this node"},
		{"/exec/ns/p/c?command=ls", 400, "you must specify at least 1 of stdin, stdout, stderr"},
		{"/exec/ns/p/c?output=1", 400, "no command"},
		{"/exec/ns/p/uid/c?output=1", 400, "no command"}, // the kubelet's form with the pod's uid
		{"/portForward/ns", 400, "expected /portForward/{namespace}/{pod}"},
		{"/portForward/ns/q", 404, "pod ns/q is not running on this node"},
		{"/attach/ns", 400, "expected /attach/{namespace}/{pod}/{container}"},
		{"/attach/ns/q/c?output=1", 404, "pod ns/q is not running on this node"},
		{"/attach/ns/p/c", 400, "you must specify at least 1 of stdin, stdout, stderr"},
	} {
		code, body := get(t, h, tc.path)
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, code, body, tc.code, tc.body)
		}
	}
}
