// Package schedclient is a client of the Mesos v1 scheduler HTTP API
// (POST /api/v1/scheduler). Run subscribes and stays subscribed: it follows
// the 307 redirects to the leading master, watches the heartbeats, and
// after a dead stream resubscribes with backoff as the same framework
// (failover). Calls go on separate connections with the Mesos-Stream-Id.
// It speaks JSON or protobuf, and behaves the same against Apache Mesos and
// km's built-in master, whose conformance tests use it.
package schedclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
)

// Defaults of Config.
const (
	DefaultCallTimeout      = 10 * time.Second
	DefaultMinBackoff       = time.Second
	DefaultMaxBackoff       = 15 * time.Second // what the Mesos docs suggest at most
	DefaultMissedHeartbeats = 5
	// DefaultHeartbeatInterval is Mesos' (DEFAULT_HEARTBEAT_INTERVAL): the
	// watchdog uses it until SUBSCRIBED announces the real one.
	DefaultHeartbeatInterval = 15 * time.Second
)

// maxHeartbeatInterval caps what a master may announce, so that a silly
// value cannot overflow time.Duration or switch the watchdog off.
const maxHeartbeatInterval = 24 * time.Hour

// Config configures a Client. Masters and FrameworkInfo are required.
type Config struct {
	// Masters are tried in turn until one leads (a non-leading one
	// redirects to the leader): "host:port", "host" (port 5050) or an
	// http(s) URL, whose path defaults to /api/v1/scheduler.
	Masters []string
	// Encoding of the calls and of the event stream: codec.JSON (the
	// default) or codec.Protobuf.
	Encoding codec.Encoding
	// FrameworkInfo to subscribe with; user and name are required. Its id,
	// when set, makes the first SUBSCRIBE a failover of that framework
	// (set it to the ID stored from an earlier SUBSCRIBED). The client
	// keeps a copy.
	FrameworkInfo *mesospb.FrameworkInfo
	// SuppressedRoles and OfferConstraints go into every SUBSCRIBE.
	SuppressedRoles  []string
	OfferConstraints *schedulerpb.OfferConstraints
	// HTTPClient makes the requests. Its Timeout is not applied to the
	// event stream (a subscription lasts for days; the heartbeat watchdog
	// decides when it is dead); it is the default CallTimeout. Default: a
	// client on a clone of http.DefaultTransport.
	HTTPClient *http.Client
	// CallTimeout bounds each call other than SUBSCRIBE (default
	// HTTPClient.Timeout if set, else 10s).
	CallTimeout time.Duration
	// MinBackoff and MaxBackoff bound the jittered exponential wait
	// between subscription attempts (1s and 15s).
	MinBackoff, MaxBackoff time.Duration
	// MissedHeartbeats is how many heartbeat intervals (announced by
	// SUBSCRIBED, 15s until then) may pass without a byte from the master
	// before the stream is declared dead (5).
	MissedHeartbeats int
	// Header is added to every request, e.g. Authorization for HTTP Basic
	// authentication. Content-Type, Accept and Mesos-Stream-Id are the
	// client's.
	Header http.Header
	// MaxRecordSize bounds one event on the stream (default
	// recordio.DefaultMaxRecordSize, 64 MiB); a larger one is an error.
	MaxRecordSize int
	// Clock runs the watchdog and the backoff (tests); default real time.
	Clock Clock
	// Logger gets a line per (re)subscription and its failures; default
	// none.
	Logger *log.Logger
}

// Handler receives what happens on the subscription, on Run's goroutine,
// one call at a time: a slow handler holds up the events after it (but is
// not mistaken for a dead master).
type Handler interface {
	// Event is called for every event in the order the master sent it:
	// SUBSCRIBED first on every subscription (calls work from then on),
	// HEARTBEAT and ERROR included.
	Event(ctx context.Context, ev *schedulerpb.Event)
	// Disconnected is called when a subscription that had reached
	// SUBSCRIBED ends, with the reason: the offers held are void, calls
	// fail with ErrNotSubscribed, and events may have been missed
	// (reconcile after the next SUBSCRIBED). It is not called when Run
	// ends because its context did.
	Disconnected(err error)
}

// HandlerFuncs adapts functions to Handler; nil ones do nothing.
type HandlerFuncs struct {
	OnEvent        func(ctx context.Context, ev *schedulerpb.Event)
	OnDisconnected func(err error)
}

// Event calls OnEvent.
func (h HandlerFuncs) Event(ctx context.Context, ev *schedulerpb.Event) {
	if h.OnEvent != nil {
		h.OnEvent(ctx, ev)
	}
}

// Disconnected calls OnDisconnected.
func (h HandlerFuncs) Disconnected(err error) {
	if h.OnDisconnected != nil {
		h.OnDisconnected(err)
	}
}

// Client is a Mesos v1 scheduler API client. Make one with New and call
// Run; the calls may be made from any goroutine, the handler included.
type Client struct {
	cfg     Config
	masters []*url.URL
	http    *http.Client
	// jitter returns a random duration in [0, d]; replaced by tests.
	jitter func(d time.Duration) time.Duration

	running atomic.Bool

	mu          sync.Mutex
	info        *mesospb.FrameworkInfo // what the next SUBSCRIBE carries
	suppressed  []string
	frameworkID string
	leader      *url.URL // the master that led last, tried first
	sess        *session // nil while not subscribed
	// teardown is the TEARDOWN in flight or done on the current session:
	// Mesos closes the stream before it answers 202, so the end of the
	// stream waits for the answer to know whether to resubscribe.
	teardown *teardownCall
}

type teardownCall struct {
	done chan struct{}
	ok   bool // written before done is closed
}

// session is one live subscription: calls go where the stream is, with its
// stream ID.
type session struct {
	master   *url.URL
	streamID string
}

// New checks cfg, fills in the defaults and makes a client. Nothing is sent
// until Run.
func New(cfg Config) (*Client, error) {
	if len(cfg.Masters) == 0 {
		return nil, errors.New("schedclient: no Mesos master given: set Config.Masters to at least one host:port (e.g. 127.0.0.1:5050)")
	}
	var masters []*url.URL
	for _, m := range cfg.Masters {
		u, err := ParseMaster(m)
		if err != nil {
			return nil, fmt.Errorf("schedclient: %w", err)
		}
		masters = append(masters, u)
	}
	if cfg.FrameworkInfo == nil {
		return nil, errors.New("schedclient: Config.FrameworkInfo is required (at least user and name)")
	}
	if cfg.FrameworkInfo.GetUser() == "" || cfg.FrameworkInfo.GetName() == "" {
		return nil, errors.New("schedclient: FrameworkInfo needs user and name: Mesos refuses a SUBSCRIBE without them (the HTTP API fills nothing in)")
	}
	if cfg.Encoding == 0 {
		cfg.Encoding = codec.JSON
	}
	if cfg.Encoding != codec.JSON && cfg.Encoding != codec.Protobuf {
		return nil, fmt.Errorf("schedclient: Config.Encoding %v is neither codec.JSON nor codec.Protobuf", cfg.Encoding)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = cfg.HTTPClient.Timeout
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		return nil, fmt.Errorf("schedclient: Config.MaxBackoff %v is below MinBackoff %v", cfg.MaxBackoff, cfg.MinBackoff)
	}
	if cfg.MissedHeartbeats <= 0 {
		cfg.MissedHeartbeats = DefaultMissedHeartbeats
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = log.New(io.Discard, "", 0)
	}
	info := proto.Clone(cfg.FrameworkInfo).(*mesospb.FrameworkInfo)
	cfg.FrameworkInfo = info
	return &Client{
		cfg:         cfg,
		masters:     masters,
		http:        streamClient(cfg.HTTPClient),
		jitter:      func(d time.Duration) time.Duration { return rand.N(d + 1) },
		info:        info,
		suppressed:  append([]string(nil), cfg.SuppressedRoles...),
		frameworkID: info.GetId().GetValue(),
	}, nil
}

// FrameworkID is the framework's ID: the one from the last SUBSCRIBED, or
// the one configured before that ("" for a new framework not yet
// subscribed).
func (c *Client) FrameworkID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frameworkID
}

// Leader is the URL of the master last known to lead (nil before the first
// answer).
func (c *Client) Leader() *url.URL {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader == nil {
		return nil
	}
	u := *c.leader
	return &u
}

// StreamID is the Mesos-Stream-Id of the current subscription ("" while
// not subscribed).
func (c *Client) StreamID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return ""
	}
	return c.sess.streamID
}

// Subscribed tells whether a subscription is up (between SUBSCRIBED and the
// next disconnection).
func (c *Client) Subscribed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess != nil
}

func (c *Client) setLeader(u *url.URL) {
	c.mu.Lock()
	c.leader = u
	c.mu.Unlock()
}

// forgetLeader drops the leader after an attempt failed, so that the next
// round starts from the configured masters rather than waiting on a dead
// one again. Whatever it was, it failed in this round: it was tried first,
// or was learnt from the redirects of the attempt that failed.
func (c *Client) forgetLeader() {
	c.mu.Lock()
	c.leader = nil
	c.mu.Unlock()
}

// candidates are the masters to try, in order: the last leader, then the
// configured ones.
func (c *Client) candidates() []*url.URL {
	var out []*url.URL
	seen := map[string]bool{}
	if l := c.Leader(); l != nil {
		out = append(out, l)
		seen[l.String()] = true
	}
	for _, m := range c.masters {
		if !seen[m.String()] {
			out = append(out, m)
			seen[m.String()] = true
		}
	}
	return out
}

// Run subscribes and delivers the events to h until ctx ends (it then
// returns nil) or subscribing again cannot help, which the error says:
//
//   - *ErrorEvent: the master sent ERROR (Mesos closes the stream after
//     one). errors.Is(err, ErrFrameworkRemoved): the framework ID is dead,
//     start as a new framework. errors.Is(err, ErrFailedOver): another
//     scheduler took the framework over. Otherwise the subscription was
//     refused (authorization, validation).
//   - *StatusError: SUBSCRIBE was answered with a 4xx (400 with the
//     master's reason, 401, 403...): a configuration error.
//   - ErrTornDown: the stream ended after Teardown.
//   - anything else: a stream that is not Mesos' (wrong Content-Type, no
//     Mesos-Stream-Id), or a second Run.
//
// A stream that ends, breaks, stays silent for MissedHeartbeats heartbeat
// intervals or carries garbage, an unreachable master and an answer of 503
// (no leader yet, recovering) all lead to another SUBSCRIBE after a
// jittered exponential backoff, as the framework ID got from SUBSCRIBED.
func (c *Client) Run(ctx context.Context, h Handler) error {
	if h == nil {
		return errors.New("schedclient: Run needs a Handler")
	}
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("schedclient: Run is already running: a Client has one subscription")
	}
	defer c.running.Store(false)
	failures := 0
	for {
		start := c.cfg.Clock.Now()
		live, err := c.subscribeOnce(ctx, h)
		if ctx.Err() != nil {
			return nil
		}
		var p *permanent
		if errors.As(err, &p) {
			return p.err
		}
		// A subscription that held for a while starts the backoff over;
		// one that keeps dropping right after SUBSCRIBED does not, so a
		// flapping master is not hammered.
		if live && c.cfg.Clock.Now().Sub(start) >= c.cfg.MaxBackoff {
			failures = 0
		}
		wait := c.backoff(failures)
		failures++
		c.cfg.Logger.Printf("Mesos subscription: %v; subscribing again in %v", err, wait.Round(time.Millisecond))
		t := c.cfg.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// backoff is the wait before the next attempt after n failures in a row:
// MinBackoff doubling up to MaxBackoff, of which a random half is taken off
// ("equal jitter"), so that the schedulers of a restarted master do not
// all come back at once but none comes back too soon either.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.MinBackoff
	for i := 0; i < n && d < c.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.cfg.MaxBackoff)
	return d/2 + c.jitter(d/2)
}

// subscribeCall is SUBSCRIBE as the framework now stands: a failover
// (framework_info.id and framework_id set) once an ID is known.
func (c *Client) subscribeCall() *schedulerpb.Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	info := proto.Clone(c.info).(*mesospb.FrameworkInfo)
	call := &schedulerpb.Call{
		Type: schedulerpb.Call_SUBSCRIBE.Enum(),
		Subscribe: &schedulerpb.Call_Subscribe{
			FrameworkInfo:   info,
			SuppressedRoles: append([]string(nil), c.suppressed...),
		},
	}
	if c.cfg.OfferConstraints != nil {
		call.Subscribe.OfferConstraints = c.cfg.OfferConstraints
	}
	if c.frameworkID != "" {
		info.Id = &mesospb.FrameworkID{Value: proto.String(c.frameworkID)}
		call.FrameworkId = &mesospb.FrameworkID{Value: proto.String(c.frameworkID)}
	} else {
		info.Id = nil
	}
	return call
}

// heartbeatPeriod is how long the master may stay silent given its
// announced heartbeat interval in seconds (absent, zero, negative, NaN:
// Mesos' default).
func (c *Client) heartbeatPeriod(seconds float64) time.Duration {
	interval := DefaultHeartbeatInterval
	if seconds > 0 && !math.IsNaN(seconds) {
		if seconds >= maxHeartbeatInterval.Seconds() {
			interval = maxHeartbeatInterval
		} else {
			interval = max(time.Duration(seconds*float64(time.Second)), time.Millisecond)
		}
	}
	return interval * time.Duration(c.cfg.MissedHeartbeats)
}

// subscribeOnce makes one subscription, from SUBSCRIBE to the end of its
// stream. It reports whether SUBSCRIBED arrived and why it ended; a
// *permanent error ends Run.
func (c *Client) subscribeOnce(ctx context.Context, h Handler) (live bool, err error) {
	call := c.subscribeCall()
	subscribedAs := call.GetFrameworkId().GetValue()
	body, err := codec.Marshal(c.cfg.Encoding, call)
	if err != nil {
		return false, &permanent{fmt.Errorf("schedclient: cannot encode SUBSCRIBE (check Config.FrameworkInfo): %w", err)}
	}

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var at atomic.Pointer[url.URL] // the master being talked to, for the watchdog's message
	var heard atomic.Bool          // SUBSCRIBED seen
	wd := newWatchdog(c.cfg.Clock, c.heartbeatPeriod(0), func(waited time.Duration) {
		host := "?"
		if u := at.Load(); u != nil {
			host = u.Host
		}
		if heard.Load() {
			cancel(fmt.Errorf("nothing from the Mesos master at %s for %v (%d missed heartbeats): the connection is dead",
				host, waited.Round(time.Millisecond), c.cfg.MissedHeartbeats))
		} else {
			cancel(fmt.Errorf("no answer to SUBSCRIBE from the Mesos master at %s for %v", host, waited.Round(time.Millisecond)))
		}
	})
	defer wd.stop()
	// why explains an error that happened because sctx was cancelled.
	why := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if cause := context.Cause(sctx); cause != nil && sctx.Err() != nil {
			return cause
		}
		return err
	}

	resp, master, err := c.open(sctx, body, wd, &at)
	if err != nil {
		return false, why(err)
	}
	defer resp.Body.Close()
	if err := c.checkStream(resp, master); err != nil {
		return false, err
	}
	streamID := resp.Header.Get("Mesos-Stream-Id")

	defer func() {
		c.mu.Lock()
		c.sess = nil
		td := c.teardown
		c.teardown = nil
		c.mu.Unlock()
		if !live {
			return
		}
		var p *permanent
		if td != nil && !errors.As(err, &p) {
			select {
			case <-td.done:
				if td.ok {
					err = &permanent{fmt.Errorf("%w; the stream ended: %v", ErrTornDown, err)}
				}
			case <-ctx.Done():
			}
		}
		if ctx.Err() == nil {
			reason := err
			if errors.As(err, &p) {
				reason = p.err
			}
			h.Disconnected(reason)
		}
	}()

	rr := recordio.NewReader(wd.body(resp.Body), c.cfg.MaxRecordSize)
	for n := 1; ; n++ {
		rec, err := rr.ReadRecord()
		if err != nil {
			return live, why(streamError(err, master, n))
		}
		ev, err := decodeEvent(c.cfg.Encoding, rec)
		if err != nil {
			return live, fmt.Errorf("event %d from the Mesos master at %s: %v", n, master.Host, err)
		}
		if !live {
			switch ev.GetType() {
			case schedulerpb.Event_SUBSCRIBED:
				sub := ev.GetSubscribed()
				c.mu.Lock()
				c.frameworkID = sub.GetFrameworkId().GetValue()
				c.sess = &session{master: master, streamID: streamID}
				c.leader = master
				c.teardown = nil
				c.mu.Unlock()
				live = true
				heard.Store(true)
				wd.setPeriod(c.heartbeatPeriod(sub.GetHeartbeatIntervalSeconds()))
				c.cfg.Logger.Printf("subscribed to the Mesos master at %s as framework %s", master.Host, sub.GetFrameworkId().GetValue())
			case schedulerpb.Event_ERROR:
				// Refused: the handler hears it, Run ends with it.
			default:
				return false, fmt.Errorf("the Mesos master at %s began the stream with %s, where a subscription begins with SUBSCRIBED or ERROR", master.Host, ev.GetType())
			}
		}
		h.Event(ctx, ev)
		if ev.GetType() == schedulerpb.Event_ERROR {
			return live, &permanent{&ErrorEvent{
				Message:     ev.GetError().GetMessage(),
				FrameworkID: firstNonEmpty(subscribedAs, c.FrameworkID()),
				Master:      master.Host,
				Subscribed:  live,
			}}
		}
	}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// open sends SUBSCRIBE to the masters in turn until one answers 200: an
// unreachable master, a 503 (no leader, recovering) or another 5xx moves on
// to the next; a 4xx is the master saying the request is wrong, and ends
// Run.
func (c *Client) open(ctx context.Context, body []byte, wd *watchdog, at *atomic.Pointer[url.URL]) (*http.Response, *url.URL, error) {
	var failures []string
	for _, u := range c.candidates() {
		at.Store(u)
		wd.waiting()
		resp, answered, err := c.post(ctx, c.http, u, body, "")
		wd.busy()
		at.Store(answered)
		if err != nil {
			if ctx.Err() != nil {
				return nil, answered, err
			}
			c.forgetLeader()
			failures = append(failures, err.Error())
			continue
		}
		if resp.StatusCode == http.StatusOK {
			return resp, answered, nil
		}
		se := &StatusError{Call: schedulerpb.Call_SUBSCRIBE, Code: resp.StatusCode, Body: readErrorBody(resp), Master: answered.Host}
		if !se.transient() {
			return nil, answered, &permanent{fmt.Errorf("%w; subscribing cannot work like this: fix the configuration and start again", se)}
		}
		c.forgetLeader()
		failures = append(failures, se.Error())
	}
	return nil, nil, fmt.Errorf("no Mesos master took SUBSCRIBE: %s", strings.Join(failures, "; "))
}

// checkStream refuses a 200 that is not a Mesos event stream in the
// encoding asked for: asking again would get the same.
func (c *Client) checkStream(resp *http.Response, master *url.URL) error {
	want := c.cfg.Encoding.MediaType()
	ct := resp.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != want {
		return &permanent{fmt.Errorf("the server at %s answered SUBSCRIBE with Content-Type %q where %q was asked for: is %s a Mesos master's scheduler API?",
			master.Host, ct, want, master)}
	}
	if resp.Header.Get("Mesos-Stream-Id") == "" {
		return &permanent{fmt.Errorf("the server at %s answered SUBSCRIBE without a Mesos-Stream-Id header, without which no call can be made: is %s a Mesos master's scheduler API?",
			master.Host, master)}
	}
	return nil
}

// streamError says why reading event n ended.
func streamError(err error, master *url.URL, n int) error {
	var fe *recordio.FormatError
	switch {
	case errors.Is(err, io.EOF):
		return fmt.Errorf("the Mesos master at %s closed the event stream after %d events", master.Host, n-1)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("the event stream from the Mesos master at %s broke off in the middle of event %d", master.Host, n)
	case errors.As(err, &fe):
		return fmt.Errorf("the event stream from the Mesos master at %s is not RecordIO-framed events (%v): garbage on the connection, or not a Mesos master", master.Host, err)
	}
	return fmt.Errorf("reading event %d from the Mesos master at %s: %w", n, master.Host, err)
}

// decodeEvent decodes one record and refuses an event without the payload
// its type promises, which would otherwise reach the handler as, say, an
// UPDATE of nothing. Types this schema does not know are passed on (as
// UNKNOWN from JSON, whose unknown enum names are dropped as Mesos drops
// them; with their number from protobuf): a newer master's new event must
// not make the client reconnect in a loop; the handler ignores it.
func decodeEvent(enc codec.Encoding, rec []byte) (*schedulerpb.Event, error) {
	ev := &schedulerpb.Event{}
	if err := codec.Unmarshal(enc, rec, ev); err != nil {
		return nil, fmt.Errorf("not a %s scheduler Event: %v (the record begins %s)", enc, err, preview(rec))
	}
	var missing string
	switch ev.GetType() {
	case schedulerpb.Event_SUBSCRIBED:
		if ev.Subscribed == nil {
			missing = "subscribed"
		} else if ev.GetSubscribed().GetFrameworkId().GetValue() == "" {
			return nil, errors.New("SUBSCRIBED with an empty framework_id")
		}
	case schedulerpb.Event_OFFERS:
		if ev.Offers == nil {
			missing = "offers"
		}
	case schedulerpb.Event_INVERSE_OFFERS:
		if ev.InverseOffers == nil {
			missing = "inverse_offers"
		}
	case schedulerpb.Event_RESCIND:
		if ev.Rescind == nil {
			missing = "rescind"
		}
	case schedulerpb.Event_RESCIND_INVERSE_OFFER:
		if ev.RescindInverseOffer == nil {
			missing = "rescind_inverse_offer"
		}
	case schedulerpb.Event_UPDATE:
		if ev.Update == nil {
			missing = "update"
		}
	case schedulerpb.Event_UPDATE_OPERATION_STATUS:
		if ev.UpdateOperationStatus == nil {
			missing = "update_operation_status"
		}
	case schedulerpb.Event_MESSAGE:
		if ev.Message == nil {
			missing = "message"
		}
	case schedulerpb.Event_FAILURE:
		if ev.Failure == nil {
			missing = "failure"
		}
	case schedulerpb.Event_ERROR:
		if ev.Error == nil {
			missing = "error"
		}
	}
	if missing != "" {
		return nil, fmt.Errorf("a %s event without its %q field", ev.GetType(), missing)
	}
	return ev, nil
}

// preview quotes the start of a record for an error message.
func preview(rec []byte) string {
	const n = 64
	if len(rec) > n {
		return fmt.Sprintf("%q...", rec[:n])
	}
	return fmt.Sprintf("%q", rec)
}
