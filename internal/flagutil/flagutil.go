// Package flagutil holds the flag conventions shared by every km command.
package flagutil

import (
	"strings"

	"github.com/spf13/pflag"
)

// WordSepNormalizeFunc lets a flag be spelled Mesos-style (--work_dir) or
// Kubernetes-style (--work-dir): both normalise to the dashed name.
func WordSepNormalizeFunc(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	if strings.Contains(name, "_") {
		return pflag.NormalizedName(strings.ReplaceAll(name, "_", "-"))
	}
	return pflag.NormalizedName(name)
}
