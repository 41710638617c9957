package e2e

import (
	"os"
	"testing"
	"time"

	"github.com/k8sm/k8sm/internal/testing/kmbinary"
)

// BenchmarkLocalStartStop: how long `km local` (2 agents, network
// namespaces) takes from its start to its ready line, on a fresh data dir
// and again on the same one, and how long an ordered stop takes.
func BenchmarkLocalStartStop(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("km local with network namespaces needs root")
	}
	km := kmbinary.Path(b)
	var fresh, again, stop time.Duration
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		t0 := time.Now()
		c := startLocal(b, km, dir)
		fresh += time.Since(t0)
		t0 = time.Now()
		c.stop(b)
		stop += time.Since(t0)
		t0 = time.Now()
		c = startLocal(b, km, dir)
		again += time.Since(t0)
		c.stop(b)
	}
	n := float64(b.N)
	b.ReportMetric(fresh.Seconds()/n, "s/fresh-start")
	b.ReportMetric(again.Seconds()/n, "s/restart")
	b.ReportMetric(stop.Seconds()/n, "s/stop")
}
