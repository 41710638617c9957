// Package kmbinary gives tests the km binary: $KM_BINARY when set (make test
// builds bin/km and sets it), else one build per test process.
package kmbinary

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	once  sync.Once
	path  string
	bErr  error
	bLogs string
)

// Path returns the path of a km binary built from this checkout.
func Path(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("KM_BINARY"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("KM_BINARY=%s: %v", p, err)
		}
		return p
	}
	once.Do(build)
	if bErr != nil {
		t.Fatalf("building km: %v\n%s", bErr, bLogs)
	}
	return path
}

func build() {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		bErr = err
		return
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	dir, err := os.MkdirTemp("", "km-test-bin-")
	if err != nil {
		bErr = err
		return
	}
	path = filepath.Join(dir, "km")
	ldflags := ""
	for _, p := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		ldflags += " -X " + p + ".gitVersion=v1.36.3 -X " + p + ".gitMajor=1 -X " + p + ".gitMinor=36 -X " + p + ".gitTreeState=clean"
	}
	cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", path, "./cmd/km")
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	bLogs, bErr = string(b), err
}
