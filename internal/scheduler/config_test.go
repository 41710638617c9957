package scheduler

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/k8sm/k8sm/internal/scheduler/placement"
)

func TestSchedulerConfigINI(t *testing.T) {
	dir := t.TempDir()
	ini := filepath.Join(dir, "scheduler.ini")
	os.WriteFile(ini, []byte(`
; k8sm's --scheduler-config, section [scheduler]
[scheduler]
offer-ttl = 10s
refuse_seconds = 2.5
initial-pod-backoff = 500ms
max-pod-backoff = 2m
placement = spread
default-container-cpu-limit = 0.5
[other]
ignored = yes
`), 0o644)
	c := DefaultConfig()
	if err := c.LoadINI(ini); err != nil {
		t.Fatal(err)
	}
	if c.OfferTTL != 10*time.Second || c.RefuseSeconds != 2.5 || c.InitialPodBackoff != 500*time.Millisecond ||
		c.MaxPodBackoff != 2*time.Minute || c.Strategy != placement.Spread || c.Defaults.CPUs != 0.5 {
		t.Fatalf("config %+v", c)
	}
	for body, want := range map[string]string{
		"[scheduler]\noffer-ttl = soon\n":   `offer-ttl = "soon" is not a duration`,
		"[scheduler]\nofer-ttl = 1s\n":      `unknown setting "ofer-ttl"`,
		"[scheduler]\nplacement = random\n": `unknown placement strategy "random"`,
		"[scheduler]\njust a line\n":        `is not key = value`,
	} {
		os.WriteFile(ini, []byte(body), 0o644)
		c := DefaultConfig()
		err := c.LoadINI(ini)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "scheduler.ini:2") {
			t.Errorf("%q: got %v, want %q with the line", body, err, want)
		}
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	st := newState()
	prev := time.Duration(0)
	for n := 1; n <= 10; n++ {
		d := backoff(time.Second, 60*time.Second, n, st.rng)
		if d > 60*time.Second || d < 0 {
			t.Fatalf("attempt %d: %v", n, d)
		}
		if n <= 5 && d < prev/2 {
			t.Fatalf("attempt %d: %v after %v", n, d, prev)
		}
		prev = d
	}
	if d := backoff(time.Second, 60*time.Second, 20, st.rng); d < 45*time.Second {
		t.Fatalf("capped backoff %v", d)
	}
}
