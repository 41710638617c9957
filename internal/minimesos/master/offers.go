package master

import (
	"fmt"
	"math"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
)

// Mesos' defaults for refuse_seconds and its cap.
const (
	defaultRefuseSeconds = 5.0
	maxRefuseSeconds     = 365 * 24 * 3600.0
)

// allocate runs one DRF allocation cycle (Mesos' hierarchical allocator):
// for every agent with free resources, the role with the lowest dominant
// share among roles that want offers gets them, and within the role the
// framework with the lowest share; each (agent, role) becomes one offer.
// Frameworks that are disconnected, suppressed for the role or filtered on
// the agent are skipped.
func (s *state) allocate(now time.Time) {
	start := time.Now()
	defer func() {
		s.metrics.allocationRuns++
		s.metrics.allocationNanos += time.Since(start).Nanoseconds()
	}()
	byRole := map[string][]*framework{}
	for _, id := range s.sortedFrameworkIDs() {
		fw := s.frameworks[id]
		if fw.stream == nil {
			continue
		}
		for _, r := range fw.roles {
			if !fw.suppressed[r] {
				byRole[r] = append(byRole[r], fw)
			}
		}
	}
	if len(byRole) == 0 || len(s.agents) == 0 {
		return
	}
	roles := make([]string, 0, len(byRole))
	for r := range byRole {
		roles = append(roles, r)
	}
	totals := s.clusterTotals()

	// Frameworks of each role kept sorted by share; only the one that gets
	// an offer changes its share, and it moves to its new place.
	type ranked struct {
		fw    *framework
		share float64
	}
	sorted := map[string][]ranked{}
	for role, fws := range byRole {
		rs := make([]ranked, len(fws))
		for i, fw := range fws {
			rs[i] = ranked{fw, fw.allocated.share(role, totals)}
		}
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].share < rs[j].share })
		sorted[role] = rs
	}
	ids := s.sortedAgentIDs()
	first := s.agentCursor % len(ids)
	s.agentCursor++
	pending := map[*framework][]*offer{}
	for i := range ids {
		a := s.agents[ids[(first+i)%len(ids)]]
		if a.stream == nil || resources.IsEmpty(a.free) {
			continue
		}
		// Roles in order of their current dominant share.
		sort.SliceStable(roles, func(i, j int) bool {
			return s.roleShare(roles[i], totals) < s.roleShare(roles[j], totals)
		})
		for _, role := range roles {
			avail := resources.AllocatableTo(a.free, role)
			if !minAllocatable(avail) {
				continue
			}
			rs := sorted[role]
			for i, r := range rs {
				if s.filtered(r.fw, role, a, avail, now) {
					continue
				}
				o := s.makeOffer(r.fw, a, role, avail, now)
				pending[r.fw] = append(pending[r.fw], o)
				// Move the framework to its new place (its share grew).
				r.share = r.fw.allocated.share(role, totals)
				j := i
				for j+1 < len(rs) && rs[j+1].share <= r.share {
					rs[j] = rs[j+1]
					j++
				}
				rs[j] = r
				break
			}
		}
	}
	// One OFFERS event per framework per cycle, as Mesos batches them.
	for fw, offers := range pending {
		ev := &schedulerpb.Event{Type: schedulerpb.Event_OFFERS.Enum(), Offers: &schedulerpb.Event_Offers{}}
		for _, o := range offers {
			ev.Offers.Offers = append(ev.Offers.Offers, s.offerProto(o))
		}
		s.metrics.offersSent += len(offers)
		s.sendFramework(fw, ev)
	}
}

// minAllocatable is Mesos' default --min_allocatable_resources
// (cpus:0.01|mem:32): an offer must carry at least one of them.
func minAllocatable(r resources.Resources) bool {
	return resources.Scalar(r, "cpus") >= 0.01 || resources.Scalar(r, "mem") >= 32
}

func (s *state) clusterTotals() map[string]float64 {
	t := map[string]float64{}
	for _, a := range s.agents {
		for _, name := range drfResources {
			t[name] += resources.Scalar(a.total, name)
		}
	}
	return t
}

func (s *state) roleShare(role string, totals map[string]float64) float64 {
	var sums resourceSums
	for _, fw := range s.frameworks {
		for _, name := range drfResources {
			sums.addScalar(role, name, fw.allocated.get(role, name))
		}
	}
	return sums.share(role, totals)
}

// drfResources are the scalars dominant shares are computed over.
var drfResources = []string{"cpus", "mem", "disk", "gpus"}

// resourceSums is what a framework holds per role, as scalar totals.
type resourceSums struct {
	m map[string]map[string]float64
}

func (rs *resourceSums) addScalar(role, name string, v float64) {
	if rs.m == nil {
		rs.m = map[string]map[string]float64{}
	}
	if rs.m[role] == nil {
		rs.m[role] = map[string]float64{}
	}
	rs.m[role][name] += v
}

func (rs *resourceSums) add(role string, r resources.Resources) {
	for _, name := range drfResources {
		if v := resources.Scalar(r, name); v != 0 {
			rs.addScalar(role, name, v)
		}
	}
}

func (rs *resourceSums) sub(role string, r resources.Resources) {
	for _, name := range drfResources {
		if v := resources.Scalar(r, name); v != 0 {
			rs.addScalar(role, name, -v)
			if rs.m[role][name] < 1e-9 {
				rs.m[role][name] = 0
			}
		}
	}
}

func (rs *resourceSums) get(role, name string) float64 {
	if rs.m == nil {
		return 0
	}
	return rs.m[role][name]
}

func (rs *resourceSums) share(role string, totals map[string]float64) float64 {
	share := 0.0
	for _, name := range drfResources {
		if t := totals[name]; t > 0 {
			share = math.Max(share, rs.get(role, name)/t)
		}
	}
	return share
}

// filtered reports whether a refuse filter of fw covers what the agent
// offers now (Mesos' subset rule: new or larger resources break it early).
func (s *state) filtered(fw *framework, role string, a *agent, avail resources.Resources, now time.Time) bool {
	f := fw.filters[filterKey{role, a.id}]
	if f == nil {
		return false
	}
	if !now.Before(f.expires) {
		delete(fw.filters, filterKey{role, a.id})
		return false
	}
	return resources.Contains(f.refused, avail)
}

func (s *state) expireFilters(now time.Time) {
	for _, fw := range s.frameworks {
		for k, f := range fw.filters {
			if !now.Before(f.expires) {
				delete(fw.filters, k)
			}
		}
	}
}

// addFilter installs a refuse filter for resources a framework declined or
// left unused. refuse_seconds 0 installs none; negative means the default;
// large values are capped at a year; the filter lasts at least one
// allocation interval.
func (s *state) addFilter(fw *framework, role string, a *agent, refused resources.Resources, filters *mesospb.Filters, now time.Time) {
	secs := defaultRefuseSeconds
	if filters != nil {
		secs = filters.GetRefuseSeconds() // proto2 default 5 when unset
	}
	if secs < 0 {
		secs = defaultRefuseSeconds
	}
	if secs == 0 || resources.IsEmpty(refused) {
		return
	}
	if secs > maxRefuseSeconds {
		secs = maxRefuseSeconds
	}
	d := time.Duration(secs * float64(time.Second))
	if d < s.cfg.AllocationInterval {
		d = s.cfg.AllocationInterval
	}
	key := filterKey{role, a.id}
	if old := fw.filters[key]; old != nil && now.Before(old.expires) {
		// Refusing more keeps the union of both refusals.
		refused = resources.Add(old.refused, refused)
		if old.expires.After(now.Add(d)) {
			d = old.expires.Sub(now)
		}
	}
	fw.filters[key] = &filter{refused: refused, expires: now.Add(d)}
}

func (s *state) makeOffer(fw *framework, a *agent, role string, res resources.Resources, now time.Time) *offer {
	o := &offer{
		id:      fmt.Sprintf("%s-O%d", s.m.id, s.offerSeq),
		fw:      fw,
		agent:   a,
		role:    role,
		res:     resources.WithAllocationRole(res, role),
		created: now,
	}
	s.offerSeq++
	s.offers[o.id] = o
	fw.offers[o.id] = o
	a.free = resources.Subtract(a.free, res)
	fw.allocated.add(role, res)
	return o
}

func (s *state) offerProto(o *offer) *mesospb.Offer {
	a := o.agent
	p := &mesospb.Offer{
		Id:          &mesospb.OfferID{Value: proto.String(o.id)},
		FrameworkId: fwID(o.fw.id),
		AgentId:     &mesospb.AgentID{Value: proto.String(a.id)},
		Hostname:    proto.String(a.info.GetHostname()),
		Url:         agentURL(a),
		Attributes:  a.info.GetAttributes(),
	}
	res := o.res
	if !o.fw.multiRole {
		// Frameworks without MULTI_ROLE see no allocation_info (Mesos 1.11).
		res = resources.WithAllocationRole(res, "")
	} else {
		p.AllocationInfo = &mesospb.Resource_AllocationInfo{Role: proto.String(o.role)}
	}
	p.Resources = res
	for execID := range o.fw.executors[a.id] {
		p.ExecutorIds = append(p.ExecutorIds, &mesospb.ExecutorID{Value: proto.String(execID)})
	}
	sort.Slice(p.ExecutorIds, func(i, j int) bool { return p.ExecutorIds[i].GetValue() < p.ExecutorIds[j].GetValue() })
	return p
}

func agentURL(a *agent) *mesospb.URL {
	host, port := splitHostPort(a.endpoint, int(a.info.GetPort()))
	return &mesospb.URL{
		Scheme: proto.String("http"),
		Address: &mesospb.Address{
			Hostname: proto.String(a.info.GetHostname()),
			Ip:       proto.String(host),
			Port:     proto.Int32(int32(port)),
		},
		Path: proto.String("/slave(1)"),
	}
}

// removeOffer takes an offer back. With rescind the framework is told
// (RESCIND); without, the offer just disappears (used or declined). Its
// resources return to the agent.
func (s *state) removeOffer(o *offer, rescind bool) {
	if s.offers[o.id] != o {
		return
	}
	delete(s.offers, o.id)
	delete(o.fw.offers, o.id)
	plain := resources.WithAllocationRole(o.res, "")
	o.agent.free = resources.Add(o.agent.free, plain)
	o.fw.allocated.sub(o.role, plain)
	if rescind {
		s.metrics.offersRescinded++
		s.sendFramework(o.fw, &schedulerpb.Event{
			Type:    schedulerpb.Event_RESCIND.Enum(),
			Rescind: &schedulerpb.Event_Rescind{OfferId: &mesospb.OfferID{Value: proto.String(o.id)}},
		})
	}
}

// expireOffers rescinds offers older than --offer_timeout, without a
// filter (Mesos).
func (s *state) expireOffers(now time.Time) {
	if s.cfg.OfferTimeout <= 0 {
		return
	}
	for _, o := range s.offers {
		if now.Sub(o.created) >= s.cfg.OfferTimeout {
			s.removeOffer(o, true)
		}
	}
}

// decline returns offers with a filter.
func (s *state) decline(fw *framework, offerIDs []*mesospb.OfferID, filters *mesospb.Filters) {
	now := s.now()
	for _, id := range offerIDs {
		o := fw.offers[id.GetValue()]
		if o == nil {
			continue // unknown or already gone: Mesos ignores it
		}
		s.removeOffer(o, false)
		s.addFilter(fw, o.role, o.agent, resources.WithAllocationRole(o.res, ""), filters, now)
		s.metrics.offersDeclined++
	}
}

// revive clears filters and suppression for roles (all when empty).
func (s *state) revive(fw *framework, roles []string) {
	if len(roles) == 0 {
		roles = fw.roles
	}
	for _, r := range roles {
		delete(fw.suppressed, r)
		for k := range fw.filters {
			if k.role == r {
				delete(fw.filters, k)
			}
		}
	}
	s.allocate(s.now())
}

func (s *state) suppress(fw *framework, roles []string) {
	if len(roles) == 0 {
		roles = fw.roles
	}
	for _, r := range roles {
		fw.suppressed[r] = true
	}
}
