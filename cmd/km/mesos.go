package main

import "github.com/spf13/cobra"

// mesosSubcommands are the children of `km mesos` (the built-in
// Mesos-compatible master and agent), registered by their own files.
var mesosSubcommands []func() *cobra.Command

func init() {
	subcommands = append(subcommands, func() *cobra.Command {
		cmd := &cobra.Command{
			Use:   "mesos",
			Short: "A Mesos-compatible master and agent (Mesos v1 HTTP API) for one machine and for tests",
			Long: `km mesos runs a master and agents that speak the Apache Mesos v1 HTTP APIs and
behave as Mesos 1.11 does, so that km's scheduler and executor (and other Mesos
frameworks) run on them unchanged. Production clusters use Apache Mesos.`,
		}
		for _, mk := range mesosSubcommands {
			cmd.AddCommand(mk())
		}
		return cmd
	})
}
