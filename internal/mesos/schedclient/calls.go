package schedclient

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
)

// Filters refuses the unused resources for d (0: no filter at all).
func Filters(d time.Duration) *mesospb.Filters {
	return &mesospb.Filters{RefuseSeconds: proto.Float64(d.Seconds())}
}

// LaunchOperation launches tasks.
func LaunchOperation(tasks ...*mesospb.TaskInfo) *mesospb.Offer_Operation {
	return &mesospb.Offer_Operation{
		Type:   mesospb.Offer_Operation_LAUNCH.Enum(),
		Launch: &mesospb.Offer_Operation_Launch{TaskInfos: tasks},
	}
}

// LaunchGroupOperation launches a task group under one executor.
func LaunchGroupOperation(exec *mesospb.ExecutorInfo, tasks ...*mesospb.TaskInfo) *mesospb.Offer_Operation {
	return &mesospb.Offer_Operation{
		Type: mesospb.Offer_Operation_LAUNCH_GROUP.Enum(),
		LaunchGroup: &mesospb.Offer_Operation_LaunchGroup{
			Executor:  exec,
			TaskGroup: &mesospb.TaskGroupInfo{Tasks: tasks},
		},
	}
}

func offerIDs(ids []string) []*mesospb.OfferID {
	out := make([]*mesospb.OfferID, len(ids))
	for i, id := range ids {
		out[i] = &mesospb.OfferID{Value: proto.String(id)}
	}
	return out
}

// Accept applies operations to offers of one agent.
func (c *Client) Accept(ctx context.Context, offers []string, ops []*mesospb.Offer_Operation, filters *mesospb.Filters) error {
	return c.Call(ctx, &schedulerpb.Call{
		Type:   schedulerpb.Call_ACCEPT.Enum(),
		Accept: &schedulerpb.Call_Accept{OfferIds: offerIDs(offers), Operations: ops, Filters: filters},
	})
}

// Decline returns offers, refusing them per filters (nil: Mesos' 5 s).
func (c *Client) Decline(ctx context.Context, offers []string, filters *mesospb.Filters) error {
	return c.Call(ctx, &schedulerpb.Call{
		Type:    schedulerpb.Call_DECLINE.Enum(),
		Decline: &schedulerpb.Call_Decline{OfferIds: offerIDs(offers), Filters: filters},
	})
}

// Revive asks for offers again for roles (all when none), clearing filters.
func (c *Client) Revive(ctx context.Context, roles ...string) error {
	return c.Call(ctx, &schedulerpb.Call{Type: schedulerpb.Call_REVIVE.Enum(), Revive: &schedulerpb.Call_Revive{Roles: roles}})
}

// Suppress stops offers for roles (all when none).
func (c *Client) Suppress(ctx context.Context, roles ...string) error {
	return c.Call(ctx, &schedulerpb.Call{Type: schedulerpb.Call_SUPPRESS.Enum(), Suppress: &schedulerpb.Call_Suppress{Roles: roles}})
}

// Kill kills a task; grace, when positive, is the kill policy's grace
// period. agentID may be "".
func (c *Client) Kill(ctx context.Context, taskID, agentID string, grace time.Duration) error {
	k := &schedulerpb.Call_Kill{TaskId: &mesospb.TaskID{Value: proto.String(taskID)}}
	if agentID != "" {
		k.AgentId = &mesospb.AgentID{Value: proto.String(agentID)}
	}
	if grace > 0 {
		k.KillPolicy = &mesospb.KillPolicy{GracePeriod: &mesospb.DurationInfo{Nanoseconds: proto.Int64(int64(grace))}}
	}
	return c.Call(ctx, &schedulerpb.Call{Type: schedulerpb.Call_KILL.Enum(), Kill: k})
}

// Acknowledge acknowledges a status update that carries a uuid (updates
// without one must not be acknowledged).
func (c *Client) Acknowledge(ctx context.Context, st *mesospb.TaskStatus) error {
	return c.Call(ctx, &schedulerpb.Call{
		Type: schedulerpb.Call_ACKNOWLEDGE.Enum(),
		Acknowledge: &schedulerpb.Call_Acknowledge{
			AgentId: st.GetAgentId(), TaskId: st.GetTaskId(), Uuid: st.GetUuid(),
		},
	})
}

// ReconcileTask names a task to reconcile; AgentID may be "".
type ReconcileTask struct{ TaskID, AgentID string }

// Reconcile asks for the latest state of tasks (none: implicit, all).
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

// Message sends bytes to an executor (best effort).
func (c *Client) Message(ctx context.Context, agentID, executorID string, data []byte) error {
	return c.Call(ctx, &schedulerpb.Call{
		Type: schedulerpb.Call_MESSAGE.Enum(),
		Message: &schedulerpb.Call_Message{
			AgentId:    &mesospb.AgentID{Value: proto.String(agentID)},
			ExecutorId: &mesospb.ExecutorID{Value: proto.String(executorID)},
			Data:       data,
		},
	})
}

// Shutdown shuts an executor down.
func (c *Client) Shutdown(ctx context.Context, agentID, executorID string) error {
	return c.Call(ctx, &schedulerpb.Call{
		Type: schedulerpb.Call_SHUTDOWN.Enum(),
		Shutdown: &schedulerpb.Call_Shutdown{
			AgentId:    &mesospb.AgentID{Value: proto.String(agentID)},
			ExecutorId: &mesospb.ExecutorID{Value: proto.String(executorID)},
		},
	})
}

// Teardown removes the framework: every task is killed.
func (c *Client) Teardown(ctx context.Context) error {
	return c.Call(ctx, &schedulerpb.Call{Type: schedulerpb.Call_TEARDOWN.Enum()})
}

// UpdateFramework changes the FrameworkInfo (answered 200).
func (c *Client) UpdateFramework(ctx context.Context, info *mesospb.FrameworkInfo, suppressed []string) error {
	info = proto.Clone(info).(*mesospb.FrameworkInfo)
	info.Id = &mesospb.FrameworkID{Value: proto.String(c.FrameworkID())}
	if err := c.Call(ctx, &schedulerpb.Call{
		Type:            schedulerpb.Call_UPDATE_FRAMEWORK.Enum(),
		UpdateFramework: &schedulerpb.Call_UpdateFramework{FrameworkInfo: info, SuppressedRoles: suppressed},
	}); err != nil {
		return err
	}
	c.mu.Lock()
	c.cfg.FrameworkInfo = info
	c.mu.Unlock()
	return nil
}
