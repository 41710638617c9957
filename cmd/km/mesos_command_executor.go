package main

import (
	"context"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/k8sm/k8sm/internal/minimesos/agent"
)

func init() {
	mesosSubcommands = append(mesosSubcommands, newCommandExecutorCommand)
}

// newCommandExecutorCommand is the command executor km's agent starts for
// command tasks (Mesos' mesos-executor); it is not for users.
func newCommandExecutorCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "command-executor",
		Short:  "The built-in command executor (started by km mesos agent for command tasks)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// A signal ends the command with the executor.
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return agent.RunCommandExecutor(ctx, log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds))
		},
	}
}
