// Package schedclient is a client of the Mesos v1 scheduler HTTP API
// (POST /api/v1/scheduler): it subscribes, keeps the subscription alive
// (heartbeat watchdog, reconnect with backoff, failover with the framework
// ID it got, redirects to the leading master) and sends calls on separate
// connections with the Mesos-Stream-Id. It works against Apache Mesos and
// km's built-in master alike, in JSON or protobuf.
package schedclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
)

// Config configures a Client.
type Config struct {
	// Masters are tried in order until one leads: "host:port" or a URL
	// (the path defaults to /api/v1/scheduler).
	Masters []string
	// Encoding of requests and of the event stream; JSON by default.
	Encoding codec.Encoding
	// FrameworkInfo to subscribe with. Its ID, when set, makes the first
	// subscription a failover of that framework.
	FrameworkInfo *mesospb.FrameworkInfo
	// SuppressedRoles to subscribe with.
	SuppressedRoles []string
	// HTTPClient for the stream and calls; it must not time the stream
	// out. Default: a client without timeout.
	HTTPClient *http.Client
	// CallTimeout bounds each non-SUBSCRIBE call (10s).
	CallTimeout time.Duration
	// MinBackoff and MaxBackoff bound the jittered exponential backoff
	// between subscription attempts (1s, 15s).
	MinBackoff, MaxBackoff time.Duration
	// MissedHeartbeats is how many heartbeat intervals without any event
	// make the stream dead (5).
	MissedHeartbeats int
	// Header is added to every request (e.g. Authorization).
	Header http.Header
	// MaxRecordSize bounds one event (recordio.DefaultMaxRecordSize).
	MaxRecordSize int
	Logger        *log.Logger
}

// Handler receives what happens on the subscription, in order, on the
// goroutine that runs Run.
type Handler interface {
	// Event is called for every event, SUBSCRIBED and ERROR included.
	Event(ctx context.Context, ev *schedulerpb.Event)
	// Disconnected is called when a subscription ends: outstanding offers
	// are void, and events may have been missed (reconcile after the next
	// SUBSCRIBED). err says why.
	Disconnected(err error)
}

// HandlerFuncs adapts functions to Handler; nil ones are skipped.
type HandlerFuncs struct {
	OnEvent        func(ctx context.Context, ev *schedulerpb.Event)
	OnDisconnected func(err error)
}

func (h HandlerFuncs) Event(ctx context.Context, ev *schedulerpb.Event) {
	if h.OnEvent != nil {
		h.OnEvent(ctx, ev)
	}
}

func (h HandlerFuncs) Disconnected(err error) {
	if h.OnDisconnected != nil {
		h.OnDisconnected(err)
	}
}

// Client is a Mesos v1 scheduler API client.
type Client struct {
	cfg Config

	mu          sync.Mutex
	leader      *url.URL // the master that answered last
	streamID    string
	frameworkID string
	subscribed  bool
}

// New makes a client. It does nothing until Run.
func New(cfg Config) (*Client, error) {
	if len(cfg.Masters) == 0 {
		return nil, errors.New("no Mesos master given: set at least one master address (host:port)")
	}
	if cfg.FrameworkInfo == nil {
		return nil, errors.New("no FrameworkInfo given")
	}
	if cfg.FrameworkInfo.GetUser() == "" || cfg.FrameworkInfo.GetName() == "" {
		return nil, errors.New("FrameworkInfo needs user and name (the HTTP API does not fill them in)")
	}
	if cfg.Encoding == 0 {
		cfg.Encoding = codec.JSON
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 15 * time.Second
	}
	if cfg.MissedHeartbeats <= 0 {
		cfg.MissedHeartbeats = 5
	}
	if cfg.Logger == nil {
		cfg.Logger = log.New(io.Discard, "", 0)
	}
	for _, m := range cfg.Masters {
		if _, err := masterURL(m); err != nil {
			return nil, err
		}
	}
	c := &Client{cfg: cfg}
	c.frameworkID = cfg.FrameworkInfo.GetId().GetValue()
	return c, nil
}

func masterURL(m string) (*url.URL, error) {
	s := m
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("master address %q is not host:port or a URL", m)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/api/v1/scheduler"
	}
	return u, nil
}

// FrameworkID is the framework's ID once subscribed ("" before).
func (c *Client) FrameworkID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frameworkID
}

// Leader is the URL of the master the client last talked to.
func (c *Client) Leader() *url.URL {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader == nil {
		return nil
	}
	u := *c.leader
	return &u
}

// FatalError ends Run: resubscribing cannot help (the framework was
// removed, or the master refuses the subscription).
type FatalError struct{ Reason string }

func (e *FatalError) Error() string { return e.Reason }

// StatusError is a non-2xx answer of the master.
type StatusError struct {
	Code int
	Body string
	Call schedulerpb.Call_Type
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("Mesos master answered %s with %d %s: %s", e.Call, e.Code, http.StatusText(e.Code), strings.TrimSpace(e.Body))
}

// ErrNotSubscribed is returned by calls made while no subscription is up.
var ErrNotSubscribed = errors.New("not subscribed to a Mesos master (yet): wait for SUBSCRIBED, calls are refused until then")

// Run subscribes and stays subscribed until ctx ends (nil is returned) or
// a FatalError happens.
func (c *Client) Run(ctx context.Context, h Handler) error {
	backoff := c.cfg.MinBackoff
	for {
		start := time.Now()
		err := c.subscribeOnce(ctx, h)
		if ctx.Err() != nil {
			return nil
		}
		var fatal *FatalError
		if errors.As(err, &fatal) {
			return err
		}
		c.cfg.Logger.Printf("subscription to Mesos ended: %v; resubscribing", err)
		if time.Since(start) > 2*c.cfg.MaxBackoff {
			backoff = c.cfg.MinBackoff // it was up for a while: start over
		}
		d := backoff/2 + time.Duration(rand.Int63n(int64(backoff/2)+1))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
		backoff *= 2
		if backoff > c.cfg.MaxBackoff {
			backoff = c.cfg.MaxBackoff
		}
	}
}

// subscribeCall builds SUBSCRIBE, as a failover when an ID is known.
func (c *Client) subscribeCall() *schedulerpb.Call {
	info := proto.Clone(c.cfg.FrameworkInfo).(*mesospb.FrameworkInfo)
	call := &schedulerpb.Call{
		Type:      schedulerpb.Call_SUBSCRIBE.Enum(),
		Subscribe: &schedulerpb.Call_Subscribe{FrameworkInfo: info, SuppressedRoles: c.cfg.SuppressedRoles},
	}
	if id := c.FrameworkID(); id != "" {
		info.Id = &mesospb.FrameworkID{Value: proto.String(id)}
		call.FrameworkId = &mesospb.FrameworkID{Value: proto.String(id)}
	}
	return call
}

// subscribeOnce runs one subscription to its end.
func (c *Client) subscribeOnce(ctx context.Context, h Handler) error {
	body, err := codec.Marshal(c.cfg.Encoding, c.subscribeCall())
	if err != nil {
		return &FatalError{Reason: "cannot encode SUBSCRIBE: " + err.Error()}
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := c.post(sctx, body, true, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		se := &StatusError{Code: resp.StatusCode, Body: string(b), Call: schedulerpb.Call_SUBSCRIBE}
		switch resp.StatusCode {
		case http.StatusServiceUnavailable, http.StatusInternalServerError, http.StatusBadGateway, http.StatusGatewayTimeout:
			return se // no leader yet, recovering: retry
		}
		return &FatalError{Reason: se.Error() + " (check the framework's configuration)"}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" && ct != c.cfg.Encoding.MediaType() {
		return fmt.Errorf("master streams %q, but %q was asked for", ct, c.cfg.Encoding.MediaType())
	}
	streamID := resp.Header.Get("Mesos-Stream-Id")

	// The watchdog: any record resets it; SUBSCRIBED sets its period.
	var watchdogMu sync.Mutex
	period := 15 * time.Second * time.Duration(c.cfg.MissedHeartbeats)
	timer := time.AfterFunc(period, cancel)
	defer timer.Stop()
	reset := func() {
		watchdogMu.Lock()
		defer watchdogMu.Unlock()
		timer.Reset(period)
	}

	r := recordio.NewReader(resp.Body, c.cfg.MaxRecordSize)
	var endErr error
	defer func() {
		c.mu.Lock()
		wasUp := c.subscribed
		c.subscribed = false
		c.streamID = ""
		c.mu.Unlock()
		if wasUp {
			h.Disconnected(endErr)
		}
	}()
	for {
		rec, err := r.ReadRecord()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				endErr = ctx.Err()
			case sctx.Err() != nil:
				endErr = fmt.Errorf("no event from the master for %v (%d missed heartbeats): the connection is dead", period, c.cfg.MissedHeartbeats)
			case errors.Is(err, io.EOF):
				endErr = errors.New("the master closed the event stream")
			default:
				endErr = fmt.Errorf("reading the event stream: %w", err)
			}
			return endErr
		}
		reset()
		ev := &schedulerpb.Event{}
		if err := codec.Unmarshal(c.cfg.Encoding, rec, ev); err != nil {
			endErr = fmt.Errorf("undecodable event from the master (%v); resubscribing", err)
			return endErr
		}
		switch ev.GetType() {
		case schedulerpb.Event_SUBSCRIBED:
			id := ev.GetSubscribed().GetFrameworkId().GetValue()
			if hb := ev.GetSubscribed().GetHeartbeatIntervalSeconds(); hb > 0 {
				watchdogMu.Lock()
				period = time.Duration(hb*float64(time.Second)) * time.Duration(c.cfg.MissedHeartbeats)
				watchdogMu.Unlock()
				reset()
			}
			c.mu.Lock()
			c.frameworkID = id
			c.streamID = streamID
			c.subscribed = true
			c.mu.Unlock()
		case schedulerpb.Event_ERROR:
			msg := ev.GetError().GetMessage()
			h.Event(ctx, ev)
			if msg == "Framework has been removed" {
				endErr = &FatalError{Reason: "the Mesos master removed framework " + c.FrameworkID() + " (torn down or its failover timeout passed); it cannot come back: start with a new framework ID"}
				return endErr
			}
			// Mesos closes the stream after an ERROR; resubscribe.
			continue
		}
		h.Event(ctx, ev)
	}
}

// post sends a call to the leader (following 307 redirects, trying the
// configured masters in turn when one is unreachable).
func (c *Client) post(ctx context.Context, body []byte, subscribe bool, streamID string) (*http.Response, error) {
	var lastErr error
	tried := 0
	targets := c.targets()
	for i := 0; i < len(targets) && tried < len(targets)+3; i++ {
		u := targets[i]
		for redirects := 0; redirects < 5; redirects++ {
			tried++
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
			if err != nil {
				return nil, err
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
			}
			resp, err := c.transport(subscribe).Do(req)
			if err != nil {
				lastErr = fmt.Errorf("cannot reach Mesos master %s: %w", u.Host, err)
				break
			}
			if resp.StatusCode == http.StatusTemporaryRedirect || resp.StatusCode == http.StatusPermanentRedirect {
				loc := resp.Header.Get("Location")
				resp.Body.Close()
				next, err := redirectTarget(u, loc)
				if err != nil {
					lastErr = err
					break
				}
				u = next
				continue
			}
			c.mu.Lock()
			c.leader = u
			c.mu.Unlock()
			return resp, nil
		}
	}
	if lastErr == nil {
		lastErr = errors.New("too many redirects between Mesos masters")
	}
	return nil, lastErr
}

// targets: the last known leader first, then the configured masters.
func (c *Client) targets() []*url.URL {
	var out []*url.URL
	if l := c.Leader(); l != nil {
		out = append(out, l)
	}
	for _, m := range c.cfg.Masters {
		u, _ := masterURL(m)
		out = append(out, u)
	}
	return out
}

// redirectTarget resolves Mesos' scheme-relative Location
// ("//host:port/api/v1/scheduler"), keeping our scheme.
func redirectTarget(from *url.URL, loc string) (*url.URL, error) {
	if loc == "" {
		return nil, errors.New("master answered 307 without a Location")
	}
	to, err := from.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("master redirected to %q: %w", loc, err)
	}
	if to.Scheme == "" {
		to.Scheme = from.Scheme
	}
	if to.Path == "" {
		to.Path = from.Path
	}
	return to, nil
}

func (c *Client) transport(subscribe bool) *http.Client {
	hc := *c.cfg.HTTPClient
	if !subscribe {
		hc.Timeout = c.cfg.CallTimeout
	}
	// Redirects are ours to follow: a POST stays a POST, and the leader
	// is remembered.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &hc
}

// Call sends a call (not SUBSCRIBE) with the stream ID and framework ID
// filled in. A non-2xx answer is a *StatusError.
func (c *Client) Call(ctx context.Context, call *schedulerpb.Call) error {
	c.mu.Lock()
	sid, fid, up := c.streamID, c.frameworkID, c.subscribed
	c.mu.Unlock()
	if !up {
		return ErrNotSubscribed
	}
	call.FrameworkId = &mesospb.FrameworkID{Value: proto.String(fid)}
	body, err := codec.Marshal(c.cfg.Encoding, call)
	if err != nil {
		return fmt.Errorf("cannot encode %s: %w", call.GetType(), err)
	}
	resp, err := c.post(ctx, body, false, sid)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return &StatusError{Code: resp.StatusCode, Body: string(b), Call: call.GetType()}
	}
	return nil
}
