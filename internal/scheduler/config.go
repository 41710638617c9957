// Package scheduler is km's Mesos framework: it watches pods meant for it,
// holds Mesos offers, places many pods per offer in one pass, launches each
// pod as a Mesos task whose data is the pod and whose executor is
// `km executor`, binds the pod, follows task status, kills tasks of deleted
// pods, reconciles, and keeps one Node object per agent.
package scheduler

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/k8sm/k8sm/internal/scheduler/placement"
	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

// Config is the scheduler's configuration (flags, or the INI file of
// --scheduler-config, section [scheduler]).
type Config struct {
	// Masters are Mesos master addresses (host:port).
	Masters       []string
	SchedulerName string
	FrameworkName string
	User          string
	// Roles the framework subscribes with; DefaultPodRoles the roles a pod
	// takes resources from unless its k8s.mesosphere.io/roles says else.
	Roles           []string
	DefaultPodRoles []string
	FailoverTimeout time.Duration

	Strategy    placement.Strategy
	PortMapping podtask.PortMapping
	Defaults    podtask.Defaults

	Executor podtask.ExecutorConfig

	// OfferTTL: held offers unused that long are declined with
	// RefuseSeconds (k8sm: 5 s, hard-coded).
	OfferTTL      time.Duration
	RefuseSeconds float64

	InitialPodBackoff time.Duration
	MaxPodBackoff     time.Duration

	ReconcileInterval time.Duration
	// NodeLeaseDuration and NodeRenewInterval govern the Node leases the
	// scheduler renews for live agents.
	NodeLeaseDuration time.Duration
	NodeRenewInterval time.Duration

	// HTTPAddress serves /healthz, /metrics and /debug (127.0.0.1:10251).
	HTTPAddress string
}

// DefaultConfig follows k8sm's defaults, fixing what its known issues list.
func DefaultConfig() Config {
	return Config{
		SchedulerName:     "default-scheduler",
		FrameworkName:     "Kubernetes",
		User:              "root",
		Roles:             []string{"*"},
		FailoverTimeout:   7 * 24 * time.Hour,
		Strategy:          placement.BinPack,
		PortMapping:       podtask.Wildcard,
		Defaults:          podtask.Defaults{CPUs: podtask.DefaultContainerCPUs, MemMB: podtask.DefaultContainerMemMB},
		OfferTTL:          5 * time.Second,
		RefuseSeconds:     5,
		InitialPodBackoff: time.Second,
		MaxPodBackoff:     60 * time.Second,
		ReconcileInterval: 5 * time.Minute,
		NodeLeaseDuration: 40 * time.Second,
		NodeRenewInterval: 10 * time.Second,
		HTTPAddress:       "127.0.0.1:10251",
	}
}

// LoadINI applies an INI file (k8sm's --scheduler-config, section
// [scheduler]) over c. Unknown keys are errors: a typo must not pass
// silently.
func (c *Config) LoadINI(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--scheduler-config: %v", err)
	}
	defer f.Close()
	section := ""
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";") {
			continue
		}
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
			section = strings.TrimSpace(l[1 : len(l)-1])
			continue
		}
		if section != "scheduler" {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("%s:%d: %q is not key = value", path, line, l)
		}
		if err := c.Set(strings.TrimSpace(k), strings.TrimSpace(v)); err != nil {
			return fmt.Errorf("%s:%d: %v", path, line, err)
		}
	}
	return sc.Err()
}

// Set applies one setting by its INI/flag name.
func (c *Config) Set(key, v string) error {
	dur := func(d *time.Duration) error {
		x, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%s = %q is not a duration (e.g. 5s, 1m)", key, v)
		}
		if x < 0 {
			return fmt.Errorf("%s = %q is negative", key, v)
		}
		*d = x
		return nil
	}
	switch strings.ReplaceAll(key, "_", "-") {
	case "offer-ttl":
		return dur(&c.OfferTTL)
	case "refuse-seconds":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return fmt.Errorf("refuse-seconds = %q is not a number of seconds >= 0", v)
		}
		c.RefuseSeconds = f
	case "initial-pod-backoff":
		return dur(&c.InitialPodBackoff)
	case "max-pod-backoff":
		return dur(&c.MaxPodBackoff)
	case "reconcile-interval":
		return dur(&c.ReconcileInterval)
	case "placement", "strategy":
		s, err := placement.ParseStrategy(v)
		if err != nil {
			return err
		}
		c.Strategy = s
	case "default-container-cpu-limit":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return fmt.Errorf("%s = %q is not a positive number of cpus", key, v)
		}
		c.Defaults.CPUs = f
	case "default-container-mem-limit":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return fmt.Errorf("%s = %q is not a positive number of MB", key, v)
		}
		c.Defaults.MemMB = f
	default:
		return fmt.Errorf("unknown setting %q (known: offer-ttl, refuse-seconds, initial-pod-backoff, max-pod-backoff, reconcile-interval, placement, default-container-cpu-limit, default-container-mem-limit)", key)
	}
	return nil
}
