// Command km is Kubernetes on Mesos: one binary with a subcommand per
// component (scheduler, executor, control plane, a built-in Mesos, km local).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/k8sm/k8sm/internal/flagutil"
)

// subcommands are registered by the files of this package, one file per
// component, so that only commands that exist are listed.
var subcommands []func() *cobra.Command

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "km",
		Short: "km runs Kubernetes workloads on an Apache Mesos cluster",
		Long: `km is Kubernetes on Mesos: a Mesos framework whose scheduler places pods on
Mesos resource offers and whose executor runs them on Mesos agents, with the
upstream Kubernetes control plane and a Mesos-compatible master and agent
built in.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetGlobalNormalizationFunc(flagutil.WordSepNormalizeFunc)
	for _, mk := range subcommands {
		root.AddCommand(mk())
	}
	return root
}

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "km: %v\n", err)
		os.Exit(1)
	}
}
