// Package kubeletapi serves the part of the kubelet API the apiserver uses:
// GET /containerLogs/{namespace}/{pod}/{container} with follow, tailLines,
// sinceSeconds, sinceTime, limitBytes, timestamps and previous (kubectl
// logs); /exec/{namespace}/{pod}/{container}, /attach/{namespace}/{pod}/{container}
// and /portForward/{namespace}/{pod}
// over SPDY or WebSocket (kubectl exec, attach, run -it and port-forward; the apiserver
// turns kubectl's WebSocket into SPDY toward nodes that do not declare
// ExtendWebSocketsToKubelet, as km's nodes do not); and /healthz.
package kubeletapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Pod is what the server needs of a running pod.
type Pod interface {
	Namespace() string
	Name() string
	// LogPath of a container's run ("" when it has none), and its current
	// run number.
	LogPath(container string, run int32) string
	Restarts(container string) (int32, bool)
	// Running tells whether the container runs now (follow ends when it
	// stops).
	Running(container string) bool
}

// Pods finds pods.
type Pods interface {
	Find(namespace, name string) Pod
}

// Handler serves the kubelet API.
func Handler(pods Pods) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/containerLogs/", func(w http.ResponseWriter, r *http.Request) { serveLogs(w, r, pods) })
	mux.HandleFunc("/exec/", func(w http.ResponseWriter, r *http.Request) { serveExec(w, r, pods) })
	mux.HandleFunc("/portForward/", func(w http.ResponseWriter, r *http.Request) { servePortForward(w, r, pods) })
	mux.HandleFunc("/attach/", func(w http.ResponseWriter, r *http.Request) { serveAttach(w, r, pods) })
	return mux
}

func serveLogs(w http.ResponseWriter, r *http.Request, pods Pods) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		http.Error(w, "expected /containerLogs/{namespace}/{pod}/{container}", http.StatusBadRequest)
		return
	}
	pod := pods.Find(parts[0], parts[1])
	if pod == nil {
		http.Error(w, fmt.Sprintf("pod %s/%s is not running on this node", parts[0], parts[1]), http.StatusNotFound)
		return
	}
	container := parts[2]
	run, ok := pod.Restarts(container)
	if !ok {
		http.Error(w, fmt.Sprintf("container %q is not in pod %s/%s", container, parts[0], parts[1]), http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	previous := q.Get("previous") == "true"
	if previous {
		if run == 0 {
			http.Error(w, fmt.Sprintf("previous terminated container %q in pod %q not found", container, parts[1]), http.StatusBadRequest)
			return
		}
		run--
	}
	opts := options{timestamps: q.Get("timestamps") == "true", follow: q.Get("follow") == "true" && !previous, tail: -1}
	if s := q.Get("tailLines"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "tailLines must be a whole number", http.StatusBadRequest)
			return
		}
		opts.tail = n
	}
	if s := q.Get("sinceSeconds"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			http.Error(w, "sinceSeconds must be a positive number", http.StatusBadRequest)
			return
		}
		opts.since = time.Now().Add(-time.Duration(n) * time.Second)
	}
	if s := q.Get("sinceTime"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			http.Error(w, "sinceTime must be RFC 3339", http.StatusBadRequest)
			return
		}
		opts.since = t
	}
	if s := q.Get("limitBytes"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err == nil && n > 0 {
			opts.limit = n
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	path := pod.LogPath(container, run)
	writeLog(r.Context(), w, path, opts, func() bool { return pod.Running(container) })
}

type options struct {
	timestamps bool
	follow     bool
	tail       int64
	since      time.Time
	limit      int64
}

// parseLine splits a CRI log line: "<time> <stream> <F|P> <text>".
func parseLine(line []byte) (time.Time, []byte, bool) {
	f := bytes.SplitN(line, []byte(" "), 4)
	if len(f) < 4 {
		return time.Time{}, line, false
	}
	ts, err := time.Parse(time.RFC3339Nano, string(f[0]))
	if err != nil {
		return time.Time{}, line, false
	}
	text := f[3]
	if string(f[2]) == "F" {
		text = append(append([]byte{}, text...), '\n')
	}
	return ts, text, true
}

func writeLog(ctx context.Context, w http.ResponseWriter, path string, o options, running func() bool) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return // no output yet
		}
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	var lines [][]byte
	rd := bufio.NewReaderSize(f, 64<<10)
	readAll := func() {
		for {
			l, err := rd.ReadBytes('\n')
			if len(l) > 0 && l[len(l)-1] == '\n' {
				lines = append(lines, l[:len(l)-1])
			} else if len(l) > 0 {
				// A line being written: read it again next time.
				f.Seek(-int64(len(l)), io.SeekCurrent)
				rd.Reset(f)
			}
			if err != nil {
				return
			}
		}
	}
	readAll()
	if o.tail >= 0 && int64(len(lines)) > o.tail {
		lines = lines[int64(len(lines))-o.tail:]
	}
	var written int64
	flusher, _ := w.(http.Flusher)
	emit := func() bool {
		for _, l := range lines {
			ts, text, ok := parseLine(l)
			if ok && !o.since.IsZero() && ts.Before(o.since) {
				continue
			}
			if o.timestamps && ok {
				text = append([]byte(ts.Format(time.RFC3339Nano)+" "), text...)
			}
			if o.limit > 0 && written+int64(len(text)) > o.limit {
				w.Write(text[:o.limit-written])
				return false
			}
			w.Write(text)
			written += int64(len(text))
		}
		lines = lines[:0]
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	if !emit() || !o.follow {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		readAll()
		if !emit() {
			return
		}
		if len(lines) == 0 && !running() {
			readAll()
			emit()
			return
		}
	}
}

// SelfSignedTLS makes a serving certificate for ip (the apiserver does not
// verify the kubelet's certificate unless told to).
func SelfSignedTLS(ip string) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "km-executor"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(5 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if p := net.ParseIP(ip); p != nil {
		tmpl.IPAddresses = []net.IP{p}
	} else {
		tmpl.DNSNames = []string{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, nil
}
