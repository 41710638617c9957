package executor

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/k8sm/k8sm/internal/executor/pods"
	"github.com/k8sm/k8sm/internal/executor/runtime"
)

// ReapEarlierRuns ends the containers that earlier runs of this executor
// left behind. A Mesos agent gives each executor run a sandbox of its own,
// .../executors/<id>/runs/<container-id>; an executor that died hard
// (SIGKILL, OOM) leaves its containers' process groups running, since each
// container is a group of its own. Their PID files, in the sibling runs'
// pod directories, say what to end: SIGTERM, up to grace, then SIGKILL.
// Outside that layout (a sandbox not in a "runs" directory) there is
// nothing to look at. It returns how many process groups it ended.
func ReapEarlierRuns(sandbox string, grace time.Duration, logger *log.Logger) (int, error) {
	sandbox = filepath.Clean(sandbox)
	runs := filepath.Dir(sandbox)
	if filepath.Base(runs) != "runs" {
		return 0, nil
	}
	entries, err := os.ReadDir(runs)
	if err != nil {
		return 0, fmt.Errorf("earlier executor runs: %v", err)
	}
	own, _ := os.Stat(sandbox)
	var groups []int
	for _, e := range entries {
		// Only real directories: "latest" is Mesos' link to the newest
		// run, ours.
		if !e.IsDir() || e.Name() == filepath.Base(sandbox) {
			continue
		}
		run := filepath.Join(runs, e.Name())
		// The sandbox may have been named by another path to our run.
		if st, err := os.Stat(run); err != nil || own != nil && os.SameFile(st, own) {
			continue
		}
		for _, f := range pidFiles(run) {
			pid, ok := runtime.TakePIDFile(f)
			if !ok {
				continue
			}
			rel, _ := filepath.Rel(filepath.Join(run, "pods"), f)
			pod, _, _ := strings.Cut(rel, string(filepath.Separator))
			container := strings.TrimSuffix(filepath.Base(f), ".pid")
			logger.Printf("ending container process group %d left by an earlier executor run %s: %s/%s", pid, e.Name(), pod, container)
			groups = append(groups, pid)
		}
	}
	for _, pid := range runtime.EndGroups(groups, grace) {
		logger.Printf("container process group %d outlived SIGTERM by %v: killed", pid, grace)
	}
	return len(groups), nil
}

// pidFiles lists a run's pods/<uid>/<PIDDir>/*.pid. The directories are
// read rather than globbed: the agent's work dir may hold glob
// metacharacters ('[' makes a pattern bad, and Glob finds nothing).
func pidFiles(run string) []string {
	var files []string
	podsDir := filepath.Join(run, "pods")
	uids, _ := os.ReadDir(podsDir)
	for _, u := range uids {
		if !u.IsDir() {
			continue
		}
		dir := filepath.Join(podsDir, u.Name(), pods.PIDDir)
		names, _ := os.ReadDir(dir)
		for _, n := range names {
			if n.Type().IsRegular() && strings.HasSuffix(n.Name(), ".pid") {
				files = append(files, filepath.Join(dir, n.Name()))
			}
		}
	}
	return files
}
