// Package execclient is a client of the Mesos v1 executor HTTP API
// (POST /api/v1/executor on the agent): configuration from the environment
// the agent gives an executor, SUBSCRIBE with the unacknowledged tasks and
// updates, reliable UPDATEs, MESSAGE, and reconnection within the recovery
// timeout when the framework checkpoints.
package execclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	mrand "math/rand"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
	"github.com/k8sm/k8sm/internal/mesos/uuid"
)

// Config is what an executor needs to talk to its agent.
type Config struct {
	FrameworkID string
	ExecutorID  string
	AgentID     string
	// AgentURL is http://<MESOS_AGENT_ENDPOINT>/api/v1/executor.
	AgentURL  string
	Directory string
	Sandbox   string
	// Checkpoint: the framework checkpoints, so the executor survives an
	// agent restart by reconnecting within RecoveryTimeout.
	Checkpoint             bool
	RecoveryTimeout        time.Duration
	SubscriptionBackoffMax time.Duration
	ShutdownGracePeriod    time.Duration
	// AuthToken, when the agent authenticates executors.
	AuthToken string

	Encoding   codec.Encoding
	HTTPClient *http.Client
	Logger     *log.Logger
}

// ConfigFromEnv reads the variables a Mesos agent sets for its executors
// (Mesos' executorEnvironment).
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	need := func(name string) (string, error) {
		v := getenv(name)
		if v == "" {
			return "", fmt.Errorf("%s is not set: km executor must be started by a Mesos agent (it sets MESOS_FRAMEWORK_ID, MESOS_EXECUTOR_ID, MESOS_AGENT_ENDPOINT...)", name)
		}
		return v, nil
	}
	var c Config
	var err error
	if c.FrameworkID, err = need("MESOS_FRAMEWORK_ID"); err != nil {
		return c, err
	}
	if c.ExecutorID, err = need("MESOS_EXECUTOR_ID"); err != nil {
		return c, err
	}
	endpoint, err := need("MESOS_AGENT_ENDPOINT")
	if err != nil {
		return c, err
	}
	if strings.Contains(endpoint, "/") || !strings.Contains(endpoint, ":") {
		return c, fmt.Errorf("MESOS_AGENT_ENDPOINT=%q is not ip:port", endpoint)
	}
	c.AgentURL = "http://" + endpoint + "/api/v1/executor"
	c.AgentID = getenv("MESOS_SLAVE_ID")
	if c.AgentID == "" {
		c.AgentID = getenv("MESOS_AGENT_ID")
	}
	c.Directory = getenv("MESOS_DIRECTORY")
	c.Sandbox = getenv("MESOS_SANDBOX")
	if c.Sandbox == "" {
		c.Sandbox = c.Directory
	}
	switch v := getenv("MESOS_CHECKPOINT"); v {
	case "", "0":
	case "1":
		c.Checkpoint = true
	default:
		return c, fmt.Errorf("MESOS_CHECKPOINT=%q: expected 0 or 1", v)
	}
	durations := []struct {
		name string
		into *time.Duration
		def  time.Duration
	}{
		{"MESOS_RECOVERY_TIMEOUT", &c.RecoveryTimeout, 15 * time.Minute},
		{"MESOS_SUBSCRIPTION_BACKOFF_MAX", &c.SubscriptionBackoffMax, 2 * time.Second},
		{"MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", &c.ShutdownGracePeriod, 5 * time.Second},
	}
	for _, d := range durations {
		v := getenv(d.name)
		if v == "" {
			*d.into = d.def
			continue
		}
		parsed, err := ParseDuration(v)
		if err != nil {
			return c, fmt.Errorf("%s: %v", d.name, err)
		}
		if parsed < 0 {
			return c, fmt.Errorf("%s=%q is negative", d.name, v)
		}
		*d.into = parsed
	}
	c.AuthToken = getenv("MESOS_EXECUTOR_AUTHENTICATION_TOKEN")
	return c, nil
}

// Handler receives the agent's events in order.
type Handler interface {
	Event(ctx context.Context, ev *executorpb.Event)
	// Disconnected: the subscription broke; the client reconnects if the
	// framework checkpoints.
	Disconnected(err error)
}

// HandlerFuncs adapts functions to Handler.
type HandlerFuncs struct {
	OnEvent        func(ctx context.Context, ev *executorpb.Event)
	OnDisconnected func(err error)
}

func (h HandlerFuncs) Event(ctx context.Context, ev *executorpb.Event) {
	if h.OnEvent != nil {
		h.OnEvent(ctx, ev)
	}
}

func (h HandlerFuncs) Disconnected(err error) {
	if h.OnDisconnected != nil {
		h.OnDisconnected(err)
	}
}

// ErrAgentGone ends Run when the connection to the agent is lost and cannot
// come back: the framework does not checkpoint, or the recovery timeout
// passed. The executor should then kill its tasks and exit.
var ErrAgentGone = errors.New("lost the connection to the Mesos agent")

// StatusError is a non-2xx answer of the agent.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("Mesos agent answered %d %s: %s", e.Code, http.StatusText(e.Code), strings.TrimSpace(e.Body))
}

// Client is a Mesos v1 executor API client.
type Client struct {
	cfg Config

	mu         sync.Mutex
	subscribed bool
	// tasks launched and not yet acknowledged (no update of theirs has
	// been ACKNOWLEDGED), and updates sent and not yet ACKNOWLEDGED, in
	// the order they were made.
	unackedTasks   map[string]*mesospb.TaskInfo
	unackedUpdates []*executorpb.Call_Update
}

// New makes a client; Run subscribes.
func New(cfg Config) *Client {
	if cfg.Encoding == 0 {
		cfg.Encoding = codec.JSON
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.SubscriptionBackoffMax <= 0 {
		cfg.SubscriptionBackoffMax = 2 * time.Second
	}
	if cfg.RecoveryTimeout <= 0 {
		cfg.RecoveryTimeout = 15 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = log.New(io.Discard, "", 0)
	}
	return &Client{cfg: cfg, unackedTasks: map[string]*mesospb.TaskInfo{}}
}

// Config is the client's configuration.
func (c *Client) Config() Config { return c.cfg }

func (c *Client) ids() (*mesospb.ExecutorID, *mesospb.FrameworkID) {
	return &mesospb.ExecutorID{Value: proto.String(c.cfg.ExecutorID)}, &mesospb.FrameworkID{Value: proto.String(c.cfg.FrameworkID)}
}

func (c *Client) subscribeCall() *executorpb.Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, f := c.ids()
	sub := &executorpb.Call_Subscribe{}
	ids := make([]string, 0, len(c.unackedTasks))
	for id := range c.unackedTasks {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		sub.UnacknowledgedTasks = append(sub.UnacknowledgedTasks, c.unackedTasks[id])
	}
	sub.UnacknowledgedUpdates = append(sub.UnacknowledgedUpdates, c.unackedUpdates...)
	return &executorpb.Call{ExecutorId: e, FrameworkId: f, Type: executorpb.Call_SUBSCRIBE.Enum(), Subscribe: sub}
}

// Run subscribes and delivers events until ctx ends (nil), or the agent is
// gone for good (an error wrapping ErrAgentGone).
func (c *Client) Run(ctx context.Context, h Handler) error {
	var lostAt time.Time
	backoff := 100 * time.Millisecond
	for {
		up, err := c.subscribeOnce(ctx, h)
		if ctx.Err() != nil {
			return nil
		}
		if up {
			lostAt = time.Time{}
			backoff = 100 * time.Millisecond
		}
		if !c.cfg.Checkpoint {
			return fmt.Errorf("%w (%v); the framework does not checkpoint, so the executor cannot reconnect", ErrAgentGone, err)
		}
		if lostAt.IsZero() {
			lostAt = time.Now()
		}
		if time.Since(lostAt) > c.cfg.RecoveryTimeout {
			return fmt.Errorf("%w: the agent did not come back within the recovery timeout of %v (last error: %v)", ErrAgentGone, c.cfg.RecoveryTimeout, err)
		}
		c.cfg.Logger.Printf("subscription to the agent failed (%v); retrying", err)
		d := time.Duration(mrand.Int63n(int64(backoff) + 1))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
		backoff *= 2
		if backoff > c.cfg.SubscriptionBackoffMax {
			backoff = c.cfg.SubscriptionBackoffMax
		}
	}
}

func (c *Client) subscribeOnce(ctx context.Context, h Handler) (bool, error) {
	body, err := codec.Marshal(c.cfg.Encoding, c.subscribeCall())
	if err != nil {
		return false, err
	}
	resp, err := c.post(ctx, body, true)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return false, &StatusError{Code: resp.StatusCode, Body: string(b)}
	}
	r := recordio.NewReader(resp.Body, 0)
	up := false
	defer func() {
		c.mu.Lock()
		c.subscribed = false
		c.mu.Unlock()
	}()
	for {
		rec, err := r.ReadRecord()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the agent closed the event stream")
			}
			if up {
				h.Disconnected(err)
			}
			return up, err
		}
		ev := &executorpb.Event{}
		if err := codec.Unmarshal(c.cfg.Encoding, rec, ev); err != nil {
			err = fmt.Errorf("undecodable event from the agent: %v", err)
			if up {
				h.Disconnected(err)
			}
			return up, err
		}
		switch ev.GetType() {
		case executorpb.Event_SUBSCRIBED:
			up = true
			c.mu.Lock()
			c.subscribed = true
			c.mu.Unlock()
		case executorpb.Event_LAUNCH:
			c.mu.Lock()
			c.unackedTasks[ev.GetLaunch().GetTask().GetTaskId().GetValue()] = ev.GetLaunch().GetTask()
			c.mu.Unlock()
		case executorpb.Event_LAUNCH_GROUP:
			c.mu.Lock()
			for _, t := range ev.GetLaunchGroup().GetTaskGroup().GetTasks() {
				c.unackedTasks[t.GetTaskId().GetValue()] = t
			}
			c.mu.Unlock()
		case executorpb.Event_ACKNOWLEDGED:
			c.acknowledged(ev.GetAcknowledged().GetTaskId().GetValue(), ev.GetAcknowledged().GetUuid())
		}
		h.Event(ctx, ev)
	}
}

func (c *Client) acknowledged(taskID string, uuid []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.unackedTasks, taskID)
	for i, u := range c.unackedUpdates {
		if bytes.Equal(u.GetStatus().GetUuid(), uuid) {
			c.unackedUpdates = append(c.unackedUpdates[:i:i], c.unackedUpdates[i+1:]...)
			return
		}
	}
}

// Unacknowledged returns the tasks and updates the agent has not
// acknowledged yet.
func (c *Client) Unacknowledged() (tasks []string, updates []*mesospb.TaskStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.unackedTasks {
		tasks = append(tasks, id)
	}
	sort.Strings(tasks)
	for _, u := range c.unackedUpdates {
		updates = append(updates, u.GetStatus())
	}
	return tasks, updates
}

func (c *Client) post(ctx context.Context, body []byte, stream bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.AgentURL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", c.cfg.Encoding.MediaType())
	req.Header.Set("Accept", c.cfg.Encoding.MediaType())
	if c.cfg.AuthToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.AuthToken)
	}
	hc := c.cfg.HTTPClient
	if !stream && hc.Timeout == 0 {
		cp := *hc
		cp.Timeout = 30 * time.Second
		hc = &cp
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the Mesos agent at %s: %w", c.cfg.AgentURL, err)
	}
	return resp, nil
}

func (c *Client) call(ctx context.Context, call *executorpb.Call) error {
	body, err := codec.Marshal(c.cfg.Encoding, call)
	if err != nil {
		return fmt.Errorf("cannot encode %s: %w", call.GetType(), err)
	}
	resp, err := c.post(ctx, body, false)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return &StatusError{Code: resp.StatusCode, Body: string(b)}
	}
	return nil
}

// Update sends a task status reliably: it gets a fresh uuid, SOURCE_EXECUTOR,
// the executor ID and a timestamp, and stays unacknowledged (resent on
// resubscription) until the agent ACKNOWLEDGEs it. A failed send is not an
// error for the update itself: it goes out again with the next SUBSCRIBE.
func (c *Client) Update(ctx context.Context, st *mesospb.TaskStatus) error {
	st = proto.Clone(st).(*mesospb.TaskStatus)
	st.Uuid = uuid.New()
	st.Source = mesospb.TaskStatus_SOURCE_EXECUTOR.Enum()
	e, f := c.ids()
	st.ExecutorId = e
	if st.AgentId == nil && c.cfg.AgentID != "" {
		st.AgentId = &mesospb.AgentID{Value: proto.String(c.cfg.AgentID)}
	}
	if st.Timestamp == nil {
		st.Timestamp = proto.Float64(float64(time.Now().UnixNano()) / 1e9)
	}
	up := &executorpb.Call_Update{Status: st}
	c.mu.Lock()
	c.unackedUpdates = append(c.unackedUpdates, up)
	c.mu.Unlock()
	return c.call(ctx, &executorpb.Call{ExecutorId: e, FrameworkId: f, Type: executorpb.Call_UPDATE.Enum(), Update: up})
}

// Message sends bytes to the scheduler (unreliable).
func (c *Client) Message(ctx context.Context, data []byte) error {
	e, f := c.ids()
	return c.call(ctx, &executorpb.Call{ExecutorId: e, FrameworkId: f, Type: executorpb.Call_MESSAGE.Enum(), Message: &executorpb.Call_Message{Data: data}})
}
