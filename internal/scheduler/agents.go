package scheduler

import (
	"context"
	"time"

	"github.com/k8sm/k8sm/internal/mesos/masterstate"
	"github.com/k8sm/k8sm/internal/mesos/resources"
)

// AgentLister lists the agents the Mesos master has registered. Offers
// are the only way the v1 scheduler API tells a framework about agents,
// and a scheduler with nothing to place suppresses them: without the
// list, an agent that joins (or comes back under a new ID after it was
// removed) would become a Node only once some pod waits.
type AgentLister interface {
	Agents(ctx context.Context) ([]masterstate.Agent, error)
}

// AgentListerFunc adapts a function.
type AgentListerFunc func(ctx context.Context) ([]masterstate.Agent, error)

func (f AgentListerFunc) Agents(ctx context.Context) ([]masterstate.Agent, error) { return f(ctx) }

// SetAgentLister makes the scheduler read the master's agent list every
// NodeRenewInterval.
func (s *Scheduler) SetAgentLister(l AgentLister) { s.agentLister = l }

func (s *Scheduler) watchAgents(ctx context.Context) {
	if s.agentLister == nil {
		return
	}
	t := time.NewTicker(s.cfg.NodeRenewInterval)
	defer t.Stop()
	failing := false
	for {
		agents, err := s.agentLister.Agents(ctx)
		if err != nil && !failing && ctx.Err() == nil {
			s.log.Printf("cannot list the Mesos agents (new agents become Nodes when they make offers): %v", err)
		}
		failing = err != nil
		if err == nil {
			s.do(func() { s.agentsListed(agents) })
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// agentsListed records the active agents as the offers would: a Node for
// each, as soon as the master has them.
func (s *Scheduler) agentsListed(agents []masterstate.Agent) {
	for _, l := range agents {
		if !l.Active || l.Hostname == "" {
			continue
		}
		a := s.st.agents[l.ID]
		if a == nil {
			a = &agentInfo{id: l.ID}
			s.st.agents[l.ID] = a
		}
		if a.alive && a.total != nil {
			continue // offers keep it current
		}
		a.hostname, a.ip, a.attrs, a.alive = l.Hostname, l.IP, l.Attributes, true
		a.ports = resources.Union(a.ports, resources.Ports(l.Resources))
		a.total = l.Resources
		s.nodes.seen(a.id, a.hostname, a.ip, a.attrs, a.total)
	}
}
