// Package kmbinary gives tests the path of a km binary to run as a child
// process.
//
// With $KM_BINARY set (make test builds bin/km and sets it) that binary is
// used. Otherwise km is built from this checkout once per test binary,
// with the Kubernetes version in its ldflags as the Makefile sets it (the
// apiserver reports v0.0.0 without, and kubectl refuses it). The build
// goes to a directory of the user's cache keyed by the checkout, under a
// file lock, so parallel test binaries ("go test ./...") build it once and
// later runs only relink what changed; nothing is left in /tmp.
//
//	km := kmbinary.Path(t)
//	out, err := exec.Command(km, "version").CombinedOutput()
package kmbinary

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// KubeVersion is the Kubernetes version km is stamped with (the Makefile's
// KUBE_VERSION).
const KubeVersion = "v1.36.3"

var (
	once     sync.Once
	built    string
	buildErr error
)

// Path returns the km binary's path, building it the first time if
// $KM_BINARY is not set. A failed build fails the test with the compiler's
// output.
func Path(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("KM_BINARY"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("KM_BINARY=%s: %v (run `make build`, or unset KM_BINARY to build km for the tests)", p, err)
		}
		return p
	}
	once.Do(func() { built, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("building km: %v", buildErr)
	}
	return built
}

// LDFlags are the linker flags of `make build` that tests need: the
// Kubernetes version of client-go and component-base.
func LDFlags() string {
	var b strings.Builder
	b.WriteString("-X github.com/k8sm/k8sm/internal/version.KM=test")
	for _, p := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		fmt.Fprintf(&b, " -X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=36 -X %s.gitCommit=km-test -X %s.gitTreeState=clean -X %s.buildDate=1970-01-01T00:00:00Z",
			p, KubeVersion, p, p, p, p, p)
	}
	return b.String()
}

func build() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the km module")
	}
	root := filepath.Dir(gomod)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(cache, "km-test-bin", hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// One build at a time per checkout: go test runs several test
	// binaries at once, and each would otherwise link 180 MB.
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("locking %s: %v", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	path := filepath.Join(dir, "km")
	// go build links only when something changed since the last build.
	cmd := exec.Command("go", "build", "-ldflags", LDFlags(), "-o", path, "./cmd/km")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/km in %s: %v\n%s", root, err, b)
	}
	return path, nil
}
