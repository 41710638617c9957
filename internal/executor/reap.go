package executor

import (
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/k8sm/k8sm/internal/executor/pods"
	"github.com/k8sm/k8sm/internal/executor/runtime"
)

// ReapEarlierRuns ends the containers that earlier runs of this executor
// left behind. A Mesos agent gives each executor run a sandbox of its own,
// .../executors/<id>/runs/<container-id>; an executor that died hard
// (SIGKILL, OOM) leaves its containers' process groups running, since they
// are not its children's children in one group. Their PID files, in the
// sibling runs' pod directories, say what to end. Outside that layout
// (a sandbox not in a "runs" directory) there is nothing to look at.
func ReapEarlierRuns(sandbox string, grace time.Duration, logger *log.Logger) int {
	sandbox = filepath.Clean(sandbox)
	runs := filepath.Dir(sandbox)
	if filepath.Base(runs) != "runs" {
		return 0
	}
	entries, err := os.ReadDir(runs)
	if err != nil {
		return 0
	}
	var files []string
	for _, e := range entries {
		// "latest" is Mesos' link to the newest run, ours.
		if !e.IsDir() || e.Name() == filepath.Base(sandbox) || e.Name() == "latest" {
			continue
		}
		found, _ := filepath.Glob(filepath.Join(runs, e.Name(), "pods", "*", pods.PIDDir, "*.pid"))
		files = append(files, found...)
	}
	if len(files) == 0 {
		return 0
	}
	ended := runtime.ReapPIDFiles(files, grace)
	if len(ended) > 0 {
		logger.Printf("ended %d container process groups %v left by earlier runs of this executor (in %s)", len(ended), ended, runs)
	}
	return len(ended)
}
