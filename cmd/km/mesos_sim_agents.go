package main

import (
	"context"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/k8sm/k8sm/internal/minimesos/simagent"
)

func init() {
	mesosSubcommands = append(mesosSubcommands, newSimAgentsCommand)
}

func newSimAgentsCommand() *cobra.Command {
	cfg := simagent.Config{}
	cmd := &cobra.Command{
		Use:   "sim-agents",
		Short: "Run many simulated agents (no processes; tasks run instantly) for benchmarks",
		Long: `km mesos sim-agents registers --count simulated agents with a km mesos master.
They speak the real agent protocol, report every launched task as TASK_RUNNING
and every kill as TASK_KILLED, and start no process: one process can hold
thousands of them for scheduler benchmarks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := simagent.New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			logger := log.New(os.Stderr, "km mesos sim-agents: ", log.LstdFlags)
			go func() {
				t := time.NewTicker(10 * time.Second)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
						logger.Printf("%d agents registered, %d tasks running", p.Registered(), p.RunningTasks())
					}
				}
			}()
			p.Run(ctx)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Master, "master", "127.0.0.1:5050", "host:port of the km mesos master")
	fs.IntVar(&cfg.Count, "count", 100, "number of simulated agents")
	fs.StringVar(&cfg.Resources, "resources", "cpus:8;mem:32768;disk:100000;ports:[31000-32000]", "resources of each agent")
	fs.StringVar(&cfg.Attributes, "attributes", "", "attributes of each agent")
	fs.StringVar(&cfg.HostnamePrefix, "hostname_prefix", "sim-agent-", "agents are named <prefix>1..N")
	return cmd
}
