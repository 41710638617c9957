package schedclient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// DefaultPath is where Mesos serves the v1 scheduler API.
const DefaultPath = "/api/v1/scheduler"

// defaultPort is the Mesos master's port, for addresses given without one.
const defaultPort = "5050"

// maxRedirects bounds the 307s followed for one request: during an
// election masters may briefly point at each other.
const maxRedirects = 5

// maxErrorBody bounds how much of an error answer is kept: Mesos' are a
// line; a proxy's HTML page need not be kept whole.
const maxErrorBody = 4 << 10

// ParseMaster turns a master address into the URL of its scheduler API:
// "host:port" and "host" (port 5050) mean http; a URL keeps its scheme, and
// its path unless that is empty ("/api/v1/scheduler" then).
func ParseMaster(addr string) (*url.URL, error) {
	s := strings.TrimSpace(addr)
	if s == "" {
		return nil, fmt.Errorf("empty Mesos master address: give host:port (e.g. 127.0.0.1:5050) or an http(s) URL")
	}
	if strings.HasPrefix(s, "zk://") {
		return nil, fmt.Errorf("Mesos master address %q is a ZooKeeper URL, which this client does not read: list the masters' host:port instead (any one of them redirects to the leader)", addr)
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("Mesos master address %q is neither host:port nor an http(s) URL: %v", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("Mesos master address %q has scheme %q: use http or https", addr, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("Mesos master address %q has no host: give host:port (e.g. 127.0.0.1:5050)", addr)
	}
	if u.Port() == "" && !strings.Contains(addr, "://") {
		u.Host = net.JoinHostPort(u.Hostname(), defaultPort)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = DefaultPath
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u, nil
}

// redirectTarget resolves the Location of a 307. Mesos sends it
// scheme-relative ("//host:port/api/v1/scheduler", master/http.cpp), so the
// scheme is the one we used; a missing path keeps ours. A redirect from
// https to http is refused: the Authorization header would go out in clear.
func redirectTarget(from *url.URL, loc string) (*url.URL, error) {
	if strings.TrimSpace(loc) == "" {
		return nil, fmt.Errorf("the Mesos master at %s answered 307 without a Location header: it does not say which master leads", from.Host)
	}
	to, err := from.Parse(strings.TrimSpace(loc))
	if err != nil {
		return nil, fmt.Errorf("the Mesos master at %s redirected to %q, which is not a URL: %v", from.Host, loc, err)
	}
	if to.Scheme != "http" && to.Scheme != "https" {
		return nil, fmt.Errorf("the Mesos master at %s redirected to %q: scheme %q is not http(s)", from.Host, loc, to.Scheme)
	}
	if from.Scheme == "https" && to.Scheme == "http" {
		return nil, fmt.Errorf("the Mesos master at %s redirected from https to %q: refused, credentials would travel in clear", from.Host, loc)
	}
	if to.Hostname() == "" {
		return nil, fmt.Errorf("the Mesos master at %s redirected to %q, which names no host", from.Host, loc)
	}
	if to.Path == "" || to.Path == "/" {
		to.Path = from.Path
	}
	to.User, to.Fragment = nil, ""
	// net/url takes hosts such as "::" that it cannot print back into a
	// URL it would parse; the request would fail later, less clearly.
	if _, err := url.Parse(to.String()); err != nil {
		return nil, fmt.Errorf("the Mesos master at %s redirected to %q, which names no usable host: %v", from.Host, loc, err)
	}
	return to, nil
}

// post sends body to u, following 307 (and 308) redirects itself rather
// than through http.Client: Go drops the Authorization header on a redirect
// to another host, and the leader needs it; and the leader it leads to is
// worth remembering. It returns the response and the URL that answered.
func (c *Client) post(ctx context.Context, hc *http.Client, u *url.URL, body []byte, streamID string) (*http.Response, *url.URL, error) {
	for hop := 0; ; hop++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
		if err != nil {
			return nil, u, fmt.Errorf("cannot make a request to %s: %v", u, err)
		}
		for k, vs := range c.cfg.Header {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
		req.Header.Set("Content-Type", c.cfg.Encoding.MediaType())
		req.Header.Set("Accept", c.cfg.Encoding.MediaType())
		if streamID != "" {
			req.Header.Set("Mesos-Stream-Id", streamID)
		} else {
			// SUBSCRIBE must not carry one (Mesos answers 400).
			req.Header.Del("Mesos-Stream-Id")
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, u, fmt.Errorf("cannot reach the Mesos master at %s: %w", u.Host, err)
		}
		if resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusPermanentRedirect {
			return resp, u, nil
		}
		loc := resp.Header.Get("Location")
		drain(resp)
		if hop >= maxRedirects {
			return nil, u, fmt.Errorf("more than %d redirects between Mesos masters, the last from %s to %q: they disagree on who leads (an election in progress?)", maxRedirects, u.Host, loc)
		}
		next, err := redirectTarget(u, loc)
		if err != nil {
			return nil, u, err
		}
		c.cfg.Logger.Printf("Mesos master %s redirects to the leader at %s", u.Host, next.Host)
		c.setLeader(next)
		u = next
	}
}

// drain reads what is left of a small body and closes it, so that the
// connection can be reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// readErrorBody is the master's explanation of a refusal, made printable.
func readErrorBody(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	drain(resp)
	return strings.ToValidUTF8(strings.TrimSpace(string(b)), "?")
}

// streamClient is the HTTP client of the event stream: no total timeout (a
// subscription lasts for days; the watchdog decides when it is dead) and
// no redirects of its own (post follows them).
func streamClient(base *http.Client) *http.Client {
	hc := *base
	hc.Timeout = 0
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &hc
}
