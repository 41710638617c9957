package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/k8sm/k8sm/internal/version"
)

func init() {
	subcommands = append(subcommands, func() *cobra.Command {
		return &cobra.Command{
			Use:   "version",
			Short: "Print the km version and the Kubernetes and Mesos API versions it speaks",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "km %s\n", version.KM)
				fmt.Fprintf(out, "Kubernetes API %s\n", version.Kubernetes)
				fmt.Fprintf(out, "Mesos API %s (Apache Mesos %s compatible)\n", version.MesosAPI, version.MesosCompat)
				return nil
			},
		}
	})
}
