package master

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// FileRegistry keeps the admitted agent IDs in a JSON file under the
// master's work dir, written atomically (a crash never leaves half a file).
type FileRegistry struct{ Path string }

type registryFile struct {
	Agents []string `json:"agents"`
}

// Load reads the registry; a missing file is an empty registry.
func (r FileRegistry) Load() ([]string, error) {
	b, err := os.ReadFile(r.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f registryFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s is corrupt (%v); move it away to start with an empty registry", r.Path, err)
	}
	return f.Agents, nil
}

// Save replaces the registry.
func (r FileRegistry) Save(ids []string) error {
	ids = append([]string(nil), ids...)
	sort.Strings(ids)
	b, err := json.Marshal(registryFile{Agents: ids})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(r.Path), 0o755); err != nil {
		return err
	}
	tmp := r.Path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, r.Path)
}
