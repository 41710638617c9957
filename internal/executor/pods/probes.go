package pods

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/k8sm/k8sm/internal/executor/runtime"
	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

func runCommand(ctx context.Context, argv []string, env []string, dir string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = env, dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd.CombinedOutput()
}

// probeOnce runs one probe: exec (exit 0), HTTP GET (200-399) or TCP
// connect, within its timeout.
func (p *Pod) probeOnce(ctx context.Context, c *container, pr *corev1.Probe) (bool, string) {
	timeout := time.Duration(pr.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case pr.Exec != nil:
		out, err := p.execIn(ctx, c, pr.Exec.Command)
		if err != nil {
			return false, fmt.Sprintf("%v: %s", err, trim(out))
		}
		return true, ""
	case pr.HTTPGet != nil:
		h := pr.HTTPGet
		port, err := p.resolvePort(c, h.Port)
		if err != nil {
			return false, err.Error()
		}
		host := h.Host
		if host == "" {
			host = p.cfg.HostIP
		}
		scheme := "http"
		if h.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, strconv.Itoa(port))+h.Path, nil)
		if err != nil {
			return false, err.Error()
		}
		req.Header.Set("User-Agent", "kube-probe/1.36")
		req.Header.Set("Accept", "*/*")
		for _, hd := range h.HTTPHeaders {
			req.Header.Set(hd.Name, hd.Value)
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := client.Do(req)
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 10<<10))
		resp.Body.Close()
		if resp.StatusCode >= 200 && resp.StatusCode < 400 {
			return true, ""
		}
		return false, fmt.Sprintf("HTTP probe failed with statuscode: %d %s", resp.StatusCode, trim(body))
	case pr.TCPSocket != nil:
		port, err := p.resolvePort(c, pr.TCPSocket.Port)
		if err != nil {
			return false, err.Error()
		}
		host := pr.TCPSocket.Host
		if host == "" {
			host = p.cfg.HostIP
		}
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false, err.Error()
		}
		conn.Close()
		return true, ""
	}
	return false, "no probe handler"
}

func trim(b []byte) string {
	if len(b) > 512 {
		b = b[:512]
	}
	return string(b)
}

// resolvePort finds the port a probe reaches: the container's host port
// when km gave it one (the pod shares the agent's network), else the
// number itself.
func (p *Pod) resolvePort(c *container, port intstr.IntOrString) (int, error) {
	var cp *corev1.ContainerPort
	for i := range c.spec.Ports {
		x := &c.spec.Ports[i]
		if port.Type == intstr.String && x.Name == port.StrVal || port.Type == intstr.Int && x.ContainerPort == port.IntVal {
			cp = x
		}
	}
	if cp == nil {
		if port.Type == intstr.String {
			return 0, fmt.Errorf("probe port %q is not a port of container %q", port.StrVal, c.spec.Name)
		}
		return int(port.IntVal), nil
	}
	if hp, ok := podtask.HostPortOf(p.spec, *cp); ok {
		return int(hp), nil
	}
	return int(cp.ContainerPort), nil
}

// probe runs a container's startup, liveness and readiness probes with
// their thresholds, as the kubelet's probe workers do.
func (p *Pod) probe(ctx context.Context, c *container, rc runtime.Container) {
	type worker struct {
		kind string
		pr   *corev1.Probe
	}
	run := func(kind string, pr *corev1.Probe, ok func(bool)) {
		period := time.Duration(pr.PeriodSeconds) * time.Second
		if period <= 0 {
			period = 10 * time.Second
		}
		success, failure := int(pr.SuccessThreshold), int(pr.FailureThreshold)
		if success <= 0 {
			success = 1
		}
		if failure <= 0 {
			failure = 3
		}
		select {
		case <-time.After(time.Duration(pr.InitialDelaySeconds) * time.Second):
		case <-ctx.Done():
			return
		}
		goods, bads := 0, 0
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			if kind != "Startup" {
				p.mu.Lock()
				started := c.started
				p.mu.Unlock()
				if !started {
					goto wait
				}
			}
			if good, msg := p.probeOnce(ctx, c, pr); good {
				goods, bads = goods+1, 0
				if goods >= success {
					ok(true)
					if kind == "Startup" {
						return
					}
				}
			} else {
				if ctx.Err() != nil {
					return
				}
				bads, goods = bads+1, 0
				p.event(corev1.EventTypeWarning, "Unhealthy", fmt.Sprintf("%s probe failed: %s", kind, msg))
				if bads >= failure {
					ok(false)
					if kind != "Readiness" {
						return
					}
				}
			}
		wait:
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}
	s := c.spec
	if s.StartupProbe != nil {
		go run("Startup", s.StartupProbe, func(ok bool) {
			p.mu.Lock()
			if ok {
				c.started = true
			} else if c.live != nil {
				close(c.live)
				c.live = nil
			}
			p.mu.Unlock()
			p.changed()
		})
	}
	if s.LivenessProbe != nil {
		go run("Liveness", s.LivenessProbe, func(ok bool) {
			if ok {
				return
			}
			p.mu.Lock()
			if c.live != nil {
				close(c.live)
				c.live = nil
			}
			p.mu.Unlock()
		})
	}
	if s.ReadinessProbe != nil {
		go run("Readiness", s.ReadinessProbe, func(ok bool) {
			p.mu.Lock()
			changed := c.ready != ok
			c.ready = ok
			p.mu.Unlock()
			if changed {
				p.changed()
			}
		})
	} else {
		// No readiness probe: ready once started (and the startup probe,
		// if any, passed).
		go func() {
			for {
				p.mu.Lock()
				started := c.started
				if started {
					c.ready = true
				}
				p.mu.Unlock()
				if started {
					p.changed()
					return
				}
				select {
				case <-time.After(100 * time.Millisecond):
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	_ = rc
}
