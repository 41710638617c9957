package schedclient

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
)

// Call sends a call other than SUBSCRIBE (which Run makes) to the master
// of the current subscription, on its own connection, with the
// subscription's Mesos-Stream-Id. call.FrameworkId is set to the
// framework's ID when it is unset (a call with another ID goes out as
// given, for tests of a master). nil means the master took the call (202,
// or 200 for UPDATE_FRAMEWORK): it is not a promise that it acted, the
// results come as events. Errors:
//
//   - wrapping ErrNotSubscribed: no subscription; nothing was sent.
//   - *StatusError: the master refused, e.g. 403 "Framework is not
//     subscribed" (the subscription was just lost) or 400 with the reason
//     the call is invalid.
//   - anything else: the master could not be reached, or ctx or
//     Config.CallTimeout ended first; the call may or may not have arrived.
func (c *Client) Call(ctx context.Context, call *schedulerpb.Call) error {
	if call == nil || call.Type == nil {
		return errors.New("schedclient: Call needs a Call with a type")
	}
	t := call.GetType()
	if t == schedulerpb.Call_SUBSCRIBE {
		return errors.New("schedclient: SUBSCRIBE is made by Run, not Call")
	}
	c.mu.Lock()
	sess, fid := c.sess, c.frameworkID
	var td *teardownCall
	if sess != nil && t == schedulerpb.Call_TEARDOWN {
		td = &teardownCall{done: make(chan struct{})}
		c.teardown = td
	}
	c.mu.Unlock()
	if sess == nil {
		return fmt.Errorf("%s not sent: %w", t, ErrNotSubscribed)
	}
	err := c.send(ctx, sess, fid, call)
	if td != nil {
		td.ok = err == nil
		close(td.done)
	}
	return err
}

func (c *Client) send(ctx context.Context, sess *session, fid string, call *schedulerpb.Call) error {
	t := call.GetType()
	if call.FrameworkId == nil {
		call.FrameworkId = &mesospb.FrameworkID{Value: proto.String(fid)}
	}
	body, err := codec.Marshal(c.cfg.Encoding, call)
	if err != nil {
		return fmt.Errorf("schedclient: cannot encode %s: %w", t, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	resp, at, err := c.post(ctx, c.http, sess.master, body, sess.streamID)
	if err != nil {
		return fmt.Errorf("%s: %w", t, err)
	}
	if resp.StatusCode/100 != 2 {
		return &StatusError{Call: t, Code: resp.StatusCode, Body: readErrorBody(resp), Master: at.Host}
	}
	drain(resp)
	return nil
}

// Accept applies operations (LaunchOperation, LaunchGroupOperation, ...)
// to offers, which must all be of one agent and one allocation role. The
// resources left unused are declined with filters (nil: Mesos' default of
// 5 seconds).
func (c *Client) Accept(ctx context.Context, offers []string, ops []*mesospb.Offer_Operation, filters *mesospb.Filters) error {
	return c.Call(ctx, &schedulerpb.Call{
		Type:   schedulerpb.Call_ACCEPT.Enum(),
		Accept: &schedulerpb.Call_Accept{OfferIds: offerIDs(offers), Operations: ops, Filters: filters},
	})
}

// Decline returns offers; filters keep their resources from coming back
// for a while (nil: Mesos' default of 5 seconds; Filters(0): none).
func (c *Client) Decline(ctx context.Context, offers []string, filters *mesospb.Filters) error {
	return c.Call(ctx, &schedulerpb.Call{
		Type:    schedulerpb.Call_DECLINE.Enum(),
		Decline: &schedulerpb.Call_Decline{OfferIds: offerIDs(offers), Filters: filters},
	})
}

// Revive asks for offers again for roles (all the framework's when none),
// clearing their filters and ending their suppression.
func (c *Client) Revive(ctx context.Context, roles ...string) error {
	call := &schedulerpb.Call{Type: schedulerpb.Call_REVIVE.Enum()}
	if len(roles) > 0 {
		call.Revive = &schedulerpb.Call_Revive{Roles: roles}
	}
	return c.Call(ctx, call)
}

// Suppress stops offers for roles (all the framework's when none) until
// Revive. A resubscription starts unsuppressed except for
// Config.SuppressedRoles: suppress again after SUBSCRIBED if need be.
func (c *Client) Suppress(ctx context.Context, roles ...string) error {
	call := &schedulerpb.Call{Type: schedulerpb.Call_SUPPRESS.Enum()}
	if len(roles) > 0 {
		call.Suppress = &schedulerpb.Call_Suppress{Roles: roles}
	}
	return c.Call(ctx, call)
}

// Kill kills a task; grace, when positive, overrides the kill policy the
// task was launched with. agentID may be "" (the master finds the task).
func (c *Client) Kill(ctx context.Context, taskID, agentID string, grace time.Duration) error {
	var policy *mesospb.KillPolicy
	if grace > 0 {
		policy = &mesospb.KillPolicy{GracePeriod: &mesospb.DurationInfo{Nanoseconds: proto.Int64(int64(grace))}}
	}
	return c.KillWithPolicy(ctx, taskID, agentID, policy)
}

// KillWithPolicy kills a task with a kill policy (nil: the task's own).
func (c *Client) KillWithPolicy(ctx context.Context, taskID, agentID string, policy *mesospb.KillPolicy) error {
	if taskID == "" {
		return errors.New("schedclient: KILL needs a task ID")
	}
	k := &schedulerpb.Call_Kill{TaskId: &mesospb.TaskID{Value: proto.String(taskID)}, KillPolicy: policy}
	if agentID != "" {
		k.AgentId = &mesospb.AgentID{Value: proto.String(agentID)}
	}
	return c.Call(ctx, &schedulerpb.Call{Type: schedulerpb.Call_KILL.Enum(), Kill: k})
}

// Acknowledge acknowledges the status update st (agent, task and uuid are
// taken from it), so that the agent sends the task's next one. Only
// updates with a uuid are acknowledged: those without (from the master:
// reconciliation, agent removal) must not be, and are refused here.
func (c *Client) Acknowledge(ctx context.Context, st *mesospb.TaskStatus) error {
	switch {
	case st == nil:
		return errors.New("schedclient: Acknowledge needs the TaskStatus of the update")
	case st.Uuid == nil:
		return fmt.Errorf("schedclient: the %s update of task %q has no uuid (it came from the master, not the agent) and must not be acknowledged",
			st.GetState(), st.GetTaskId().GetValue())
	case len(st.GetUuid()) != 16:
		return fmt.Errorf("schedclient: the %s update of task %q has a uuid of %d bytes where Mesos uses 16",
			st.GetState(), st.GetTaskId().GetValue(), len(st.GetUuid()))
	case st.GetAgentId().GetValue() == "":
		return fmt.Errorf("schedclient: the %s update of task %q has no agent_id, which ACKNOWLEDGE needs", st.GetState(), st.GetTaskId().GetValue())
	}
	return c.Call(ctx, &schedulerpb.Call{
		Type: schedulerpb.Call_ACKNOWLEDGE.Enum(),
		Acknowledge: &schedulerpb.Call_Acknowledge{
			AgentId: &mesospb.AgentID{Value: proto.String(st.GetAgentId().GetValue())},
			TaskId:  &mesospb.TaskID{Value: proto.String(st.GetTaskId().GetValue())},
			Uuid:    st.GetUuid(),
		},
	})
}

// ReconcileTask names a task to reconcile; AgentID may be "" (then the
// master answers nothing while any agent is still re-registering).
type ReconcileTask struct{ TaskID, AgentID string }

// Reconcile asks for the latest state of tasks, which comes as UPDATE
// events without uuid: explicit for the tasks given, implicit (every task
// the master knows) for none.
func (c *Client) Reconcile(ctx context.Context, tasks []ReconcileTask) error {
	r := &schedulerpb.Call_Reconcile{}
	for _, t := range tasks {
		rt := &schedulerpb.Call_Reconcile_Task{TaskId: &mesospb.TaskID{Value: proto.String(t.TaskID)}}
		if t.AgentID != "" {
			rt.AgentId = &mesospb.AgentID{Value: proto.String(t.AgentID)}
		}
		r.Tasks = append(r.Tasks, rt)
	}
	return c.Call(ctx, &schedulerpb.Call{Type: schedulerpb.Call_RECONCILE.Enum(), Reconcile: r})
}

// Message sends data to an executor, best effort (Mesos may drop it).
func (c *Client) Message(ctx context.Context, agentID, executorID string, data []byte) error {
	if data == nil {
		data = []byte{} // required in the proto: present even when empty
	}
	return c.Call(ctx, &schedulerpb.Call{
		Type: schedulerpb.Call_MESSAGE.Enum(),
		Message: &schedulerpb.Call_Message{
			AgentId:    &mesospb.AgentID{Value: proto.String(agentID)},
			ExecutorId: &mesospb.ExecutorID{Value: proto.String(executorID)},
			Data:       data,
		},
	})
}

// Shutdown shuts down a custom executor and so its tasks.
func (c *Client) Shutdown(ctx context.Context, agentID, executorID string) error {
	return c.Call(ctx, &schedulerpb.Call{
		Type: schedulerpb.Call_SHUTDOWN.Enum(),
		Shutdown: &schedulerpb.Call_Shutdown{
			AgentId:    &mesospb.AgentID{Value: proto.String(agentID)},
			ExecutorId: &mesospb.ExecutorID{Value: proto.String(executorID)},
		},
	})
}

// Teardown removes the framework: every task is killed and its ID can
// never subscribe again. Mesos then closes the stream, and Run returns
// ErrTornDown instead of resubscribing.
func (c *Client) Teardown(ctx context.Context) error {
	return c.Call(ctx, &schedulerpb.Call{Type: schedulerpb.Call_TEARDOWN.Enum()})
}

// UpdateFramework changes the FrameworkInfo (name, roles, capabilities,
// failover_timeout...; not user, principal or checkpoint) and the
// suppressed roles without resubscribing; the master answers 200 once it
// is applied. Later resubscriptions carry them.
func (c *Client) UpdateFramework(ctx context.Context, info *mesospb.FrameworkInfo, suppressedRoles []string) error {
	if info == nil {
		return errors.New("schedclient: UpdateFramework needs a FrameworkInfo")
	}
	info = proto.Clone(info).(*mesospb.FrameworkInfo)
	id := c.FrameworkID()
	// Mesos wants framework_info.id equal to the call's framework_id.
	info.Id = &mesospb.FrameworkID{Value: proto.String(id)}
	err := c.Call(ctx, &schedulerpb.Call{
		Type:            schedulerpb.Call_UPDATE_FRAMEWORK.Enum(),
		UpdateFramework: &schedulerpb.Call_UpdateFramework{FrameworkInfo: info, SuppressedRoles: suppressedRoles, OfferConstraints: c.cfg.OfferConstraints},
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.info = info
	c.suppressed = append([]string(nil), suppressedRoles...)
	c.mu.Unlock()
	return nil
}

func offerIDs(ids []string) []*mesospb.OfferID {
	out := make([]*mesospb.OfferID, len(ids))
	for i, id := range ids {
		out[i] = &mesospb.OfferID{Value: proto.String(id)}
	}
	return out
}

// Filters keeps declined (or unused) resources from being offered again
// for d. Filters(0) installs no filter: they may come back at the next
// allocation. A negative d counts as 0 (Mesos would read it as its 5 s
// default, surprisingly); Mesos caps d at a year.
func Filters(d time.Duration) *mesospb.Filters {
	s := max(d.Seconds(), 0)
	return &mesospb.Filters{RefuseSeconds: proto.Float64(math.Min(s, 365*24*3600))}
}

// LaunchOperation launches tasks, each with either a command or an
// executor.
func LaunchOperation(tasks ...*mesospb.TaskInfo) *mesospb.Offer_Operation {
	return &mesospb.Offer_Operation{
		Type:   mesospb.Offer_Operation_LAUNCH.Enum(),
		Launch: &mesospb.Offer_Operation_Launch{TaskInfos: tasks},
	}
}

// LaunchGroupOperation launches tasks as one atomic group (a pod) under
// exec, an executor of type DEFAULT (Mesos' default executor) or CUSTOM.
func LaunchGroupOperation(exec *mesospb.ExecutorInfo, tasks ...*mesospb.TaskInfo) *mesospb.Offer_Operation {
	return &mesospb.Offer_Operation{
		Type: mesospb.Offer_Operation_LAUNCH_GROUP.Enum(),
		LaunchGroup: &mesospb.Offer_Operation_LaunchGroup{
			Executor:  exec,
			TaskGroup: &mesospb.TaskGroupInfo{Tasks: tasks},
		},
	}
}

// IsNotSubscribed tells whether err means the call found no subscription:
// either the client had none (ErrNotSubscribed) or the master no longer
// had it (403). Either way the offers held are void; wait for SUBSCRIBED.
func IsNotSubscribed(err error) bool {
	if errors.Is(err, ErrNotSubscribed) {
		return true
	}
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusForbidden
}
