// Package execclient is a client of the Mesos v1 executor HTTP API
// (POST /api/v1/executor on the agent): configuration from the environment
// the agent gives an executor, SUBSCRIBE carrying the unacknowledged tasks
// and updates, reliable UPDATEs, MESSAGE, and resubscription within the
// recovery timeout when the framework checkpoints. It behaves the same
// against Apache Mesos' agent and km's built-in one.
package execclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/uuid"
)

// Clock is the time the reconnection logic runs on: the backoff between
// SUBSCRIBE attempts and the recovery timeout. Tests pass a fake one so that
// a 15-minute recovery timeout passes without waiting for it.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Handler receives the agent's events.
type Handler interface {
	// Event is called for each event, one at a time and in the order the
	// agent sent them, from Run's goroutine: a slow Event holds up the ones
	// after it. It may call Update and Message. The first event of every
	// subscription is SUBSCRIBED; LAUNCH, LAUNCH_GROUP and ACKNOWLEDGED are
	// already accounted for in Unacknowledged when Event sees them.
	Event(ctx context.Context, ev *executorpb.Event)
	// Disconnected is called when an established subscription breaks.
	// If the framework checkpoints the client then tries to resubscribe;
	// otherwise Run returns next.
	Disconnected(err error)
}

// HandlerFuncs adapts functions to Handler; nil ones do nothing.
type HandlerFuncs struct {
	OnEvent        func(ctx context.Context, ev *executorpb.Event)
	OnDisconnected func(err error)
}

// Event calls OnEvent.
func (h HandlerFuncs) Event(ctx context.Context, ev *executorpb.Event) {
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

// sentinel is an error other sentinels can wrap, so that callers can ask
// both "why" (ErrRecoveryTimeout) and "what now" (ErrAgentGone).
type sentinel struct {
	msg    string
	parent error
}

func (e *sentinel) Error() string { return e.msg }
func (e *sentinel) Unwrap() error { return e.parent }

var (
	// ErrAgentGone is wrapped by the errors Run returns when the agent is
	// lost for good: ErrNoCheckpoint and ErrRecoveryTimeout. The executor
	// should then kill its tasks and exit.
	ErrAgentGone error = &sentinel{msg: "the Mesos agent is gone"}
	// ErrNoCheckpoint: the connection could not be made or was lost, and
	// since the framework does not checkpoint there is no reconnecting
	// (the agent will not recover this executor after a restart).
	ErrNoCheckpoint error = &sentinel{
		msg:    "the framework does not checkpoint (MESOS_CHECKPOINT is not 1), so the executor cannot reconnect to its agent",
		parent: ErrAgentGone,
	}
	// ErrRecoveryTimeout: the framework checkpoints, but the agent did not
	// take a SUBSCRIBE within MESOS_RECOVERY_TIMEOUT of the disconnection.
	ErrRecoveryTimeout error = &sentinel{
		msg:    "the Mesos agent did not come back within the recovery timeout",
		parent: ErrAgentGone,
	}
	// ErrShutdown: the agent sent SHUTDOWN and then ended the connection.
	ErrShutdown = errors.New("the agent shut the executor down (SHUTDOWN event)")
	// ErrNotSubscribed: a call made while there is no subscription (before
	// the first SUBSCRIBED, or while reconnecting).
	ErrNotSubscribed = errors.New("not subscribed to the Mesos agent")
	// ErrPending is wrapped by Update's errors when the update is kept:
	// it goes out again with the next SUBSCRIBE, so the caller need not
	// resend it.
	ErrPending = errors.New("the update is kept and goes out again with the next SUBSCRIBE")
)

// StatusError is an answer of the agent other than 200 (SUBSCRIBE) or 202.
type StatusError struct {
	Call string // SUBSCRIBE, UPDATE, MESSAGE, HEARTBEAT
	Code int
	Body string // the agent's explanation, e.g. "Framework cannot be found"
}

func (e *StatusError) Error() string {
	call := e.Call
	if call == "" {
		call = "the call"
	}
	msg := fmt.Sprintf("the Mesos agent answered %s with %d %s", call, e.Code, http.StatusText(e.Code))
	if b := strings.TrimSpace(e.Body); b != "" {
		msg += ": " + b
	}
	switch e.Code {
	case http.StatusServiceUnavailable:
		msg += " (the agent is still recovering after a restart)"
	case http.StatusForbidden:
		msg += " (the executor is not subscribed, or the agent refused MESOS_EXECUTOR_AUTHENTICATION_TOKEN)"
	case http.StatusNotFound:
		msg += " (no executor API at this URL yet: the agent may be starting)"
	}
	return msg
}

// transient answers can heal by themselves: a restarting agent answers 404
// before its routes are up and 503 until it has recovered (Mesos' executor
// library retries both).
func (e *StatusError) transient() bool {
	switch e.Code {
	case http.StatusNotFound, http.StatusRequestTimeout, http.StatusTooManyRequests:
		return true
	}
	return e.Code >= 500
}

// Client is a Mesos v1 executor API client. Make one with New, then call
// Run; Update, Message and Unacknowledged may be called from any goroutine.
type Client struct {
	cfg Config
	url string

	// Replaced by tests: the uuids of updates, and the wait before a
	// SUBSCRIBE attempt given SubscriptionBackoffMax.
	newUUID func() []byte
	backoff func(max time.Duration) time.Duration

	running atomic.Bool

	mu         sync.Mutex
	subscribed bool
	shutdown   bool   // SHUTDOWN seen on the current subscription
	agentID    string // from SUBSCRIBED, if the environment had none
	// Tasks launched whose updates the agent has not acknowledged yet, in
	// launch order, and updates not acknowledged yet, in the order made:
	// both go into every SUBSCRIBE.
	tasks   []*mesospb.TaskInfo
	updates []*executorpb.Call_Update
	// unsent are updates made while not subscribed and not in any
	// SUBSCRIBE yet: they go out as UPDATEs after the next SUBSCRIBED.
	unsent []*executorpb.Call_Update
}

// New makes a client from cfg, filling in defaults; Run subscribes.
func New(cfg Config) *Client {
	if cfg.Encoding == 0 {
		cfg.Encoding = codec.JSON
	}
	if cfg.HTTPClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		cfg.HTTPClient = &http.Client{Transport: t}
	}
	if cfg.RecoveryTimeout <= 0 {
		cfg.RecoveryTimeout = DefaultRecoveryTimeout
	}
	if cfg.SubscriptionBackoffMax <= 0 {
		cfg.SubscriptionBackoffMax = DefaultSubscriptionBackoffMax
	}
	if cfg.ShutdownGracePeriod <= 0 {
		cfg.ShutdownGracePeriod = DefaultShutdownGracePeriod
	}
	if cfg.SubscribeTimeout <= 0 {
		cfg.SubscribeTimeout = 30 * time.Second
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 30 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = log.New(io.Discard, "", 0)
	}
	return &Client{cfg: cfg, url: cfg.AgentURL, newUUID: uuid.New, backoff: randomBackoff}
}

// randomBackoff waits a random time up to max, as Mesos' executor library
// does, so that the executors of a restarted agent do not all come back at
// once; at least a millisecond, so that a zero max cannot make a busy loop.
func randomBackoff(limit time.Duration) time.Duration {
	if limit <= time.Millisecond {
		return time.Millisecond
	}
	return max(rand.N(limit)+1, time.Millisecond)
}

// Config is the client's configuration, with defaults filled in.
func (c *Client) Config() Config { return c.cfg }

func (c *Client) check() error {
	if c.cfg.FrameworkID == "" || c.cfg.ExecutorID == "" {
		return errors.New("execclient: Config.FrameworkID and Config.ExecutorID must be set (ConfigFromEnv reads them from MESOS_FRAMEWORK_ID and MESOS_EXECUTOR_ID)")
	}
	u, err := url.Parse(c.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("execclient: Config.AgentURL %q is not an http:// URL of the agent's executor API (ConfigFromEnv makes it from MESOS_AGENT_ENDPOINT)", c.url)
	}
	if c.cfg.Encoding != codec.JSON && c.cfg.Encoding != codec.Protobuf {
		return fmt.Errorf("execclient: Config.Encoding %v is neither codec.JSON nor codec.Protobuf", c.cfg.Encoding)
	}
	return nil
}

func (c *Client) ids() (*mesospb.ExecutorID, *mesospb.FrameworkID) {
	return &mesospb.ExecutorID{Value: proto.String(c.cfg.ExecutorID)}, &mesospb.FrameworkID{Value: proto.String(c.cfg.FrameworkID)}
}

func (c *Client) newCall(t executorpb.Call_Type) *executorpb.Call {
	e, f := c.ids()
	return &executorpb.Call{ExecutorId: e, FrameworkId: f, Type: t.Enum()}
}

// Run subscribes to the agent and delivers its events to h until ctx ends
// (then it returns nil) or the executor cannot go on, which the error says:
//
//   - ErrNoCheckpoint (wrapping ErrAgentGone): the connection could not be
//     made or was lost and the framework does not checkpoint; the executor
//     should kill its tasks and exit.
//   - ErrRecoveryTimeout (wrapping ErrAgentGone): the framework checkpoints,
//     but the agent did not take a SUBSCRIBE within RecoveryTimeout of the
//     disconnection (or of Run's start); kill the tasks and exit.
//   - ErrShutdown: the connection ended after a SHUTDOWN event.
//   - *StatusError: the agent refused SUBSCRIBE for good (400 "Framework
//     cannot be found", 403 authentication...), with the agent's text.
//   - anything else: a Config that cannot work, or a second Run.
//
// When the framework checkpoints, a broken subscription, an unreachable
// agent, an answer of 404 or 5xx (503 while the agent recovers) and a stream
// that does not decode all lead to another SUBSCRIBE after a random wait of
// at most SubscriptionBackoffMax, carrying the unacknowledged tasks and
// updates.
func (c *Client) Run(ctx context.Context, h Handler) error {
	if h == nil {
		return errors.New("execclient: Run needs a Handler")
	}
	if err := c.check(); err != nil {
		return err
	}
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("execclient: Run is already running: a Client has one subscription")
	}
	defer c.running.Store(false)
	c.mu.Lock()
	c.shutdown = false // a SHUTDOWN seen by an earlier Run is not this one's
	c.mu.Unlock()

	clock := c.cfg.Clock
	since := clock.Now() // start of the outage, or of Run
	attempts := 0
	everSubscribed := false
	for {
		attempts++
		subscribed, err := c.subscribeOnce(ctx, h)
		if ctx.Err() != nil {
			return nil
		}
		if subscribed {
			everSubscribed = true
			since = clock.Now()
			attempts = 0
		}
		c.mu.Lock()
		shutdown := c.shutdown
		c.mu.Unlock()
		if shutdown {
			return fmt.Errorf("%w, then the connection ended (%v): kill the remaining tasks and exit", ErrShutdown, err)
		}
		var se *StatusError
		if errors.As(err, &se) && !se.transient() {
			return fmt.Errorf("subscribing to the Mesos agent at %s: %w", c.url, err)
		}
		if !c.cfg.Checkpoint {
			what := "cannot subscribe to"
			if everSubscribed {
				what = "lost the connection to"
			}
			return fmt.Errorf("%s the Mesos agent at %s: %w; %w: kill the tasks and exit", what, c.url, err, ErrNoCheckpoint)
		}
		elapsed := clock.Now().Sub(since)
		if elapsed >= c.cfg.RecoveryTimeout {
			return fmt.Errorf("%w (MESOS_RECOVERY_TIMEOUT=%s): %d SUBSCRIBE attempts to %s in %s, the last failed: %w; kill the tasks and exit",
				ErrRecoveryTimeout, FormatDuration(c.cfg.RecoveryTimeout), attempts, c.url, FormatDuration(elapsed.Round(time.Millisecond)), err)
		}
		if subscribed {
			c.cfg.Logger.Printf("lost the connection to the Mesos agent (%v); resubscribing for up to %s", err, FormatDuration(c.cfg.RecoveryTimeout))
		} else {
			c.cfg.Logger.Printf("SUBSCRIBE to the Mesos agent failed (%v); retrying", err)
		}
		wait := min(c.backoff(c.cfg.SubscriptionBackoffMax), c.cfg.RecoveryTimeout-elapsed)
		select {
		case <-ctx.Done():
			return nil
		case <-clock.After(wait):
		}
	}
}

// subscribeCall is SUBSCRIBE with everything not acknowledged yet.
func (c *Client) subscribeCall() *executorpb.Call {
	call := c.newCall(executorpb.Call_SUBSCRIBE)
	c.mu.Lock()
	defer c.mu.Unlock()
	call.Subscribe = &executorpb.Call_Subscribe{
		UnacknowledgedTasks:   slices.Clone(c.tasks),
		UnacknowledgedUpdates: slices.Clone(c.updates),
	}
	c.unsent = nil // they are all in this SUBSCRIBE
	return call
}

// Phases of one SUBSCRIBE attempt, raced by the event loop (SUBSCRIBED
// arrived) and the subscribe timeout.
const (
	attemptWaiting int32 = iota
	attemptSubscribed
	attemptTimedOut
)

// subscribeOnce makes one SUBSCRIBE and reads its stream until it ends. It
// reports whether SUBSCRIBED arrived, and why the stream ended.
func (c *Client) subscribeOnce(ctx context.Context, h Handler) (bool, error) {
	body, err := codec.Marshal(c.cfg.Encoding, c.subscribeCall())
	if err != nil {
		return false, fmt.Errorf("encoding SUBSCRIBE: %w", err)
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var phase atomic.Int32
	timer := time.AfterFunc(c.cfg.SubscribeTimeout, func() {
		if phase.CompareAndSwap(attemptWaiting, attemptTimedOut) {
			cancel(fmt.Errorf("the agent did not answer SUBSCRIBE with SUBSCRIBED within %v", c.cfg.SubscribeTimeout))
		}
	})
	defer timer.Stop()
	timedOut := func(err error) error {
		if phase.Load() == attemptTimedOut && ctx.Err() == nil {
			return context.Cause(actx)
		}
		return err
	}

	resp, err := c.post(actx, body)
	if err != nil {
		return false, timedOut(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, statusError("SUBSCRIBE", resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != c.cfg.Encoding.MediaType() {
		return false, fmt.Errorf("the agent answered SUBSCRIBE with Content-Type %q where %q was asked for: is %s a Mesos agent's executor API?",
			resp.Header.Get("Content-Type"), c.cfg.Encoding.MediaType(), c.url)
	}

	subscribed := false
	err = readEvents(resp.Body, c.cfg.Encoding, func(ev *executorpb.Event) error {
		if !subscribed {
			if ev.GetType() != executorpb.Event_SUBSCRIBED {
				return fmt.Errorf("the agent's first event is %s, where a subscription starts with SUBSCRIBED", ev.GetType())
			}
			if !phase.CompareAndSwap(attemptWaiting, attemptSubscribed) {
				return context.Cause(actx)
			}
			subscribed = true
			c.mu.Lock()
			c.shutdown = false
			if c.cfg.AgentID == "" {
				c.agentID = ev.GetSubscribed().GetAgentInfo().GetId().GetValue()
			}
			c.mu.Unlock()
			c.goLive(ctx)
		}
		c.track(ev)
		if ev.GetType() == executorpb.Event_ERROR {
			c.cfg.Logger.Printf("the Mesos agent sent ERROR: %s", ev.GetError().GetMessage())
		}
		h.Event(ctx, ev)
		return nil
	})
	err = timedOut(err)
	c.mu.Lock()
	c.subscribed = false
	c.mu.Unlock()
	if subscribed && ctx.Err() == nil {
		h.Disconnected(err)
	}
	return subscribed, err
}

// goLive marks the client subscribed, first sending the updates made since
// the SUBSCRIBE was built: they are in no SUBSCRIBE, and sending them before
// new calls may go out keeps a task's updates in order.
func (c *Client) goLive(ctx context.Context) {
	for {
		c.mu.Lock()
		batch := c.unsent
		c.unsent = nil
		if len(batch) == 0 {
			c.subscribed = true
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		for _, u := range batch {
			if err := c.postUpdate(ctx, u); err != nil {
				c.cfg.Logger.Printf("%v", err)
			}
		}
	}
}

// track keeps the unacknowledged tasks and updates, as the Mesos executor
// library's users do: a task stays until one of its updates is acknowledged.
func (c *Client) track(ev *executorpb.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ev.GetType() {
	case executorpb.Event_LAUNCH:
		c.addTask(ev.GetLaunch().GetTask())
	case executorpb.Event_LAUNCH_GROUP:
		for _, t := range ev.GetLaunchGroup().GetTaskGroup().GetTasks() {
			c.addTask(t)
		}
	case executorpb.Event_ACKNOWLEDGED:
		ack := ev.GetAcknowledged()
		id := ack.GetTaskId().GetValue()
		c.tasks = slices.DeleteFunc(c.tasks, func(t *mesospb.TaskInfo) bool { return t.GetTaskId().GetValue() == id })
		c.dropUpdate(ack.GetUuid())
	case executorpb.Event_SHUTDOWN:
		c.shutdown = true
	}
}

func (c *Client) addTask(t *mesospb.TaskInfo) {
	id := t.GetTaskId().GetValue()
	for i, old := range c.tasks {
		if old.GetTaskId().GetValue() == id {
			c.tasks[i] = t
			return
		}
	}
	c.tasks = append(c.tasks, t)
}

func (c *Client) dropUpdate(id []byte) {
	same := func(u *executorpb.Call_Update) bool { return bytes.Equal(u.GetStatus().GetUuid(), id) }
	c.updates = slices.DeleteFunc(c.updates, same)
	c.unsent = slices.DeleteFunc(c.unsent, same)
}

// Unacknowledged returns the tasks launched and the updates sent that the
// agent has not acknowledged yet: what the next SUBSCRIBE would carry. The
// messages are shared with the client: do not modify them.
func (c *Client) Unacknowledged() (tasks []*mesospb.TaskInfo, updates []*mesospb.TaskStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tasks = slices.Clone(c.tasks)
	for _, u := range c.updates {
		updates = append(updates, u.GetStatus())
	}
	return tasks, updates
}

// Update sends a task status reliably. It sets a fresh random version-4
// uuid, source SOURCE_EXECUTOR, the executor ID, the timestamp (now, unless
// set) and the agent ID (unless set), and keeps the update until the agent
// ACKNOWLEDGEs that uuid, resending it in every SUBSCRIBE until then.
//
// nil means the agent took it (202). An error wrapping ErrPending means it
// could not go out now (not subscribed, agent unreachable) but is kept:
// nothing to do. Any other error means it was not kept: a status the agent
// would refuse (no task ID or state, TASK_STAGING), or the agent's refusal
// (*StatusError, e.g. 400 "Framework cannot be found").
func (c *Client) Update(ctx context.Context, status *mesospb.TaskStatus) error {
	switch {
	case status == nil:
		return errors.New("execclient: Update needs a TaskStatus")
	case status.GetTaskId().GetValue() == "":
		return fmt.Errorf("execclient: the %s update has no task_id", status.GetState())
	case status.State == nil:
		return fmt.Errorf("execclient: the update of task %q has no state", status.GetTaskId().GetValue())
	case status.GetState() == mesospb.TaskState_TASK_STAGING:
		// What the agent answers too (400): STAGING is the agent's own
		// state for a task not yet given to the executor.
		return fmt.Errorf("execclient: an executor may not send TASK_STAGING (task %q): start with TASK_STARTING or TASK_RUNNING", status.GetTaskId().GetValue())
	}
	st := proto.Clone(status).(*mesospb.TaskStatus)
	st.Uuid = c.newUUID()
	st.Source = mesospb.TaskStatus_SOURCE_EXECUTOR.Enum()
	st.ExecutorId, _ = c.ids()
	if st.Timestamp == nil {
		st.Timestamp = proto.Float64(float64(c.cfg.Clock.Now().UnixNano()) / 1e9)
	}
	u := &executorpb.Call_Update{Status: st}

	c.mu.Lock()
	if st.AgentId == nil {
		if id := c.agentIDLocked(); id != "" {
			st.AgentId = &mesospb.AgentID{Value: proto.String(id)}
		}
	}
	c.updates = append(c.updates, u)
	live := c.subscribed
	if !live {
		c.unsent = append(c.unsent, u)
	}
	c.mu.Unlock()
	if !live {
		return fmt.Errorf("%s for task %q not sent now: %w; %w", st.GetState(), st.GetTaskId().GetValue(), ErrNotSubscribed, ErrPending)
	}
	return c.postUpdate(ctx, u)
}

func (c *Client) agentIDLocked() string {
	if c.cfg.AgentID != "" {
		return c.cfg.AgentID
	}
	return c.agentID
}

// postUpdate sends an UPDATE. An update the agent refuses for good is
// dropped: it would never be acknowledged.
func (c *Client) postUpdate(ctx context.Context, u *executorpb.Call_Update) error {
	call := c.newCall(executorpb.Call_UPDATE)
	call.Update = u
	st := u.GetStatus()
	err := c.call(ctx, call)
	if err == nil {
		return nil
	}
	var se *StatusError
	if errors.As(err, &se) && !se.transient() && se.Code != http.StatusForbidden {
		c.mu.Lock()
		c.dropUpdate(st.GetUuid())
		c.mu.Unlock()
		return fmt.Errorf("%s for task %q was refused and dropped: %w", st.GetState(), st.GetTaskId().GetValue(), err)
	}
	return fmt.Errorf("sending %s for task %q: %w; %w", st.GetState(), st.GetTaskId().GetValue(), err, ErrPending)
}

// Message sends data to the scheduler. Like Mesos' framework messages it is
// unreliable: it is not kept when it cannot go out.
func (c *Client) Message(ctx context.Context, data []byte) error {
	if !c.isSubscribed() {
		return fmt.Errorf("MESSAGE not sent (messages are not kept): %w", ErrNotSubscribed)
	}
	call := c.newCall(executorpb.Call_MESSAGE)
	call.Message = &executorpb.Call_Message{Data: data}
	return c.call(ctx, call)
}

// Heartbeat sends a HEARTBEAT call, which the Mesos executor library sends
// every 30 minutes to keep idle connections through middleboxes alive.
func (c *Client) Heartbeat(ctx context.Context) error {
	if !c.isSubscribed() {
		return fmt.Errorf("HEARTBEAT not sent: %w", ErrNotSubscribed)
	}
	return c.call(ctx, c.newCall(executorpb.Call_HEARTBEAT))
}

func (c *Client) isSubscribed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subscribed
}

func (c *Client) post(ctx context.Context, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("execclient: cannot make a request to %q: %w", c.url, err)
	}
	req.Header.Set("Content-Type", c.cfg.Encoding.MediaType())
	req.Header.Set("Accept", c.cfg.Encoding.MediaType())
	if c.cfg.AuthToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.AuthToken)
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the Mesos agent at %s: %w", c.url, err)
	}
	return resp, nil
}

// call sends a call answered by 202 and an empty body.
func (c *Client) call(ctx context.Context, call *executorpb.Call) error {
	body, err := codec.Marshal(c.cfg.Encoding, call)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", call.GetType(), err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	resp, err := c.post(ctx, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return statusError(call.GetType().String(), resp)
	}
	// Read the (empty) body so that the connection is reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}

func statusError(call string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return &StatusError{Call: call, Code: resp.StatusCode, Body: strings.ToValidUTF8(string(b), "?")}
}
