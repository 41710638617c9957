// Package placement matches queued pods against the offers the scheduler
// holds, in one pass: many pods per offer, every agent considered, as a
// sequence of small feasibility checks (roles, node name, selector and
// affinity, taints, resources, ports) and a ranking (bin-pack or spread).
// It is pure: no I/O, no clock.
package placement

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

// Strategy ranks feasible agents.
type Strategy string

const (
	// BinPack fills the fullest agents first, so that few agents are used
	// and whole agents stay free for other frameworks.
	BinPack Strategy = "binpack"
	// Spread puts each pod on the emptiest agent.
	Spread Strategy = "spread"
)

// ParseStrategy reads a strategy name.
func ParseStrategy(s string) (Strategy, error) {
	switch Strategy(strings.ToLower(s)) {
	case BinPack, "bin-pack":
		return BinPack, nil
	case Spread:
		return Spread, nil
	}
	return "", fmt.Errorf("unknown placement strategy %q: use binpack or spread", s)
}

// Range is an inclusive range of ports.
type Range struct{ Begin, End uint64 }

// Agent is what one agent offers to one role now.
type Agent struct {
	ID       string
	Hostname string
	// Role is the allocation role of the offers; ResourceRole the role the
	// resources are reserved for ("*" unreserved).
	Role         string
	ResourceRole string
	OfferIDs     []string

	CPUs  float64
	MemMB float64
	Ports []Range

	// Labels and taints of the agent's Node (attributes as
	// k8s.mesosphere.io/attribute-<name>, kubernetes.io/hostname...).
	Labels map[string]string
	Taints []corev1.Taint

	// ExecutorRunning is false when the executor must still be launched on
	// the agent; then its resources come out of the first pod placed.
	ExecutorRunning bool

	// TotalCPUs and TotalMemMB are the agent's capacity, for ranking.
	TotalCPUs  float64
	TotalMemMB float64

	placed int
}

// Pod is a pod waiting to be placed.
type Pod struct {
	Pod    *corev1.Pod
	Demand podtask.Demand
	Roles  []string
}

// Placement is one pod assigned to one agent.
type Placement struct {
	Pod       *Pod
	Agent     *Agent
	HostPorts []int32
}

// Config holds what the executor itself takes on an agent where it does not
// run yet.
type Config struct {
	Strategy      Strategy
	ExecutorCPUs  float64
	ExecutorMemMB float64
}

// Result is the outcome of a pass: the placements, and for every pod that
// found no agent, why (kube-scheduler's "0/3 nodes are available: ...").
type Result struct {
	Placements []Placement
	Unplaced   map[*Pod]string
}

// Place assigns pods (in queue order) to agents. Agents are modified: what
// the placements take is gone from them.
func Place(pods []*Pod, agents []*Agent, cfg Config) Result {
	res := Result{Unplaced: map[*Pod]string{}}
	if cfg.Strategy == "" {
		cfg.Strategy = BinPack
	}
	// Pods with the same demand and no constraints fail alike: remember
	// the demands that fit nowhere in this pass.
	failed := map[string]string{}
	for _, p := range pods {
		sig := signature(p)
		if why, ok := failed[sig]; ok && sig != "" {
			res.Unplaced[p] = why
			continue
		}
		best, ports, why := choose(p, agents, cfg)
		if best == nil {
			res.Unplaced[p] = why
			if sig != "" {
				failed[sig] = why
			}
			continue
		}
		take(best, p, ports, cfg)
		res.Placements = append(res.Placements, Placement{Pod: p, Agent: best, HostPorts: ports})
	}
	return res
}

// signature identifies pods that are interchangeable for feasibility;
// pods with placement constraints or fixed ports get none.
func signature(p *Pod) string {
	s := p.Pod.Spec
	if s.NodeName != "" || len(s.NodeSelector) > 0 || s.Affinity != nil || len(s.Tolerations) > 0 || len(p.Demand.FixedHostPorts()) > 0 {
		return ""
	}
	return fmt.Sprintf("%g/%g/%d/%s", p.Demand.CPUs, p.Demand.MemMB, len(p.Demand.Ports), strings.Join(p.Roles, ","))
}

func choose(p *Pod, agents []*Agent, cfg Config) (*Agent, []int32, string) {
	reasons := map[string]int{}
	var best *Agent
	var bestPorts []int32
	bestScore := 0.0
	for _, a := range agents {
		ports, why := fits(p, a, cfg)
		if why != "" {
			reasons[why]++
			continue
		}
		score := rank(p, a, cfg)
		if best == nil || score > bestScore {
			best, bestPorts, bestScore = a, ports, score
		}
	}
	if best != nil {
		return best, bestPorts, ""
	}
	return nil, nil, summarize(len(agents), reasons)
}

// rank scores a feasible agent; higher is better.
func rank(p *Pod, a *Agent, cfg Config) float64 {
	share := func() float64 {
		// Fraction of the agent that would remain free.
		c, m := 1.0, 1.0
		if a.TotalCPUs > 0 {
			c = (a.CPUs - p.Demand.CPUs) / a.TotalCPUs
		}
		if a.TotalMemMB > 0 {
			m = (a.MemMB - p.Demand.MemMB) / a.TotalMemMB
		}
		return (c + m) / 2
	}()
	switch cfg.Strategy {
	case Spread:
		return share - float64(a.placed)*1e-6
	default:
		// Fullest first; among equals prefer agents already running the
		// executor (no executor overhead to pay).
		s := 1 - share
		if a.ExecutorRunning {
			s += 1e-3
		}
		return s
	}
}

func summarize(n int, reasons map[string]int) string {
	if n == 0 {
		return "no offers are held: no agent has free resources for this pod's roles right now"
	}
	keys := make([]string, 0, len(reasons))
	for k := range reasons {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", reasons[k], k))
	}
	return fmt.Sprintf("0/%d agents are available: %s.", n, strings.Join(parts, ", "))
}

// fits checks one agent for one pod, returning the host ports it would get,
// or the reason it does not fit.
func fits(p *Pod, a *Agent, cfg Config) ([]int32, string) {
	if !roleAllowed(p.Roles, a.Role) {
		return nil, "offer(s) of role " + quoteRole(a.Role) + " not in the pod's roles"
	}
	if n := p.Pod.Spec.NodeName; n != "" && n != a.Hostname {
		return nil, "agent(s) didn't match the requested node name"
	}
	if !matchesSelector(p.Pod, a.Labels) {
		return nil, "agent(s) didn't match Pod's node affinity/selector"
	}
	if t, ok := untoleratedTaint(p.Pod, a.Taints); !ok {
		return nil, "agent(s) had untolerated taint {" + t.Key + ": " + t.Value + "}"
	}
	cpus, mem := p.Demand.CPUs, p.Demand.MemMB
	if !a.ExecutorRunning {
		cpus += cfg.ExecutorCPUs
		mem += cfg.ExecutorMemMB
	}
	if cpus > a.CPUs+1e-9 {
		return nil, "Insufficient cpus"
	}
	if mem > a.MemMB+1e-9 {
		return nil, "Insufficient mem"
	}
	ports, ok := allocatePorts(p.Demand.Ports, a.Ports)
	if !ok {
		return nil, "didn't have free ports for the requested pod ports"
	}
	return ports, ""
}

func quoteRole(r string) string { return "'" + r + "'" }

func roleAllowed(roles []string, role string) bool {
	if len(roles) == 0 {
		return true
	}
	for _, r := range roles {
		if r == role {
			return true
		}
	}
	return false
}

// allocatePorts gives each request a host port from free ranges: fixed
// ports first, then any free port for the others. It does not modify free.
func allocatePorts(reqs []podtask.PortRequest, free []Range) ([]int32, bool) {
	if len(reqs) == 0 {
		return nil, true
	}
	used := map[uint64]bool{}
	out := make([]int32, len(reqs))
	for i, r := range reqs {
		if r.HostPort == 0 {
			continue
		}
		hp := uint64(r.HostPort)
		if used[hp] || !inRanges(hp, free) {
			return nil, false
		}
		used[hp] = true
		out[i] = r.HostPort
	}
	i := 0
	for _, rg := range free {
		for port := rg.Begin; port <= rg.End && i < len(reqs); port++ {
			for i < len(reqs) && reqs[i].HostPort != 0 {
				i++
			}
			if i >= len(reqs) {
				break
			}
			if used[port] {
				continue
			}
			used[port] = true
			out[i] = int32(port)
			i++
		}
	}
	for i < len(reqs) && reqs[i].HostPort != 0 {
		i++
	}
	return out, i >= len(reqs)
}

func inRanges(p uint64, rs []Range) bool {
	for _, r := range rs {
		if p >= r.Begin && p <= r.End {
			return true
		}
	}
	return false
}

// take removes what a placement uses from the agent.
func take(a *Agent, p *Pod, ports []int32, cfg Config) {
	a.CPUs -= p.Demand.CPUs
	a.MemMB -= p.Demand.MemMB
	if !a.ExecutorRunning {
		a.CPUs -= cfg.ExecutorCPUs
		a.MemMB -= cfg.ExecutorMemMB
		a.ExecutorRunning = true
	}
	for _, hp := range ports {
		a.Ports = removePort(a.Ports, uint64(hp))
	}
	a.placed++
}

func removePort(rs []Range, p uint64) []Range {
	out := make([]Range, 0, len(rs)+1)
	for _, r := range rs {
		switch {
		case p < r.Begin || p > r.End:
			out = append(out, r)
		case r.Begin == r.End:
		case p == r.Begin:
			out = append(out, Range{r.Begin + 1, r.End})
		case p == r.End:
			out = append(out, Range{r.Begin, r.End - 1})
		default:
			out = append(out, Range{r.Begin, p - 1}, Range{p + 1, r.End})
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Node selection: nodeSelector, required node affinity, taints.

func matchesSelector(pod *corev1.Pod, labels map[string]string) bool {
	for k, v := range pod.Spec.NodeSelector {
		if labels[k] != v {
			return false
		}
	}
	aff := pod.Spec.Affinity
	if aff == nil || aff.NodeAffinity == nil || aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	terms := aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) == 0 {
		return false // Kubernetes: an empty list of terms matches nothing
	}
	for _, term := range terms {
		if termMatches(term, labels) {
			return true
		}
	}
	return false
}

func termMatches(term corev1.NodeSelectorTerm, labels map[string]string) bool {
	if len(term.MatchExpressions) == 0 && len(term.MatchFields) == 0 {
		return false
	}
	for _, e := range term.MatchExpressions {
		if !exprMatches(e, labels) {
			return false
		}
	}
	for _, f := range term.MatchFields {
		// Only metadata.name exists; it is the node (agent host) name.
		if f.Key != "metadata.name" || !exprMatches(corev1.NodeSelectorRequirement{Key: "kubernetes.io/hostname", Operator: f.Operator, Values: f.Values}, labels) {
			return false
		}
	}
	return true
}

func exprMatches(e corev1.NodeSelectorRequirement, labels map[string]string) bool {
	v, has := labels[e.Key]
	switch e.Operator {
	case corev1.NodeSelectorOpIn:
		return has && contains(e.Values, v)
	case corev1.NodeSelectorOpNotIn:
		return !has || !contains(e.Values, v)
	case corev1.NodeSelectorOpExists:
		return has
	case corev1.NodeSelectorOpDoesNotExist:
		return !has
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !has || len(e.Values) != 1 {
			return false
		}
		var lv, ev int64
		if _, err := fmt.Sscan(v, &lv); err != nil {
			return false
		}
		if _, err := fmt.Sscan(e.Values[0], &ev); err != nil {
			return false
		}
		if e.Operator == corev1.NodeSelectorOpGt {
			return lv > ev
		}
		return lv < ev
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// untoleratedTaint finds a NoSchedule or NoExecute taint the pod does not
// tolerate.
func untoleratedTaint(pod *corev1.Pod, taints []corev1.Taint) (corev1.Taint, bool) {
	for _, t := range taints {
		if t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		tolerated := false
		for _, tol := range pod.Spec.Tolerations {
			if tolerates(tol, t) {
				tolerated = true
				break
			}
		}
		if !tolerated {
			return t, false
		}
	}
	return corev1.Taint{}, true
}

// tolerates is Kubernetes' toleration rule: same effect (or any), same key
// (or any key with Exists), and Exists or an equal value.
func tolerates(tol corev1.Toleration, t corev1.Taint) bool {
	if tol.Effect != "" && tol.Effect != t.Effect {
		return false
	}
	if tol.Key == "" {
		return tol.Operator == corev1.TolerationOpExists
	}
	if tol.Key != t.Key {
		return false
	}
	switch tol.Operator {
	case corev1.TolerationOpExists:
		return true
	case corev1.TolerationOpEqual, "":
		return tol.Value == t.Value
	}
	return false
}
