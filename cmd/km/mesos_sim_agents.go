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
	cfg := simagent.Config{RetryInterval: 5 * time.Second}
	cmd := &cobra.Command{
		Use:   "sim-agents",
		Short: "Run many simulated agents (no processes; tasks run at once) for scheduler benchmarks",
		Long: `km mesos sim-agents registers --count simulated agents with a km mesos master.
They speak the real agent protocol, so the master cannot tell them from
km mesos agent: they answer pings, re-register with their tasks, report every
launched task as TASK_RUNNING and every kill as TASK_KILLED (resent in order
until the framework acknowledges), and start no process. One process holds
thousands of them.`,
		Example: `  km mesos sim-agents --master=127.0.0.1:5050 --count=1000 --resources='cpus:8;mem:32768;ports:[31000-32000]' --hostname-prefix=sim-`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := log.New(os.Stderr, "km mesos sim-agents: ", log.LstdFlags)
			cfg.Logger = logger
			p, err := simagent.New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			go func() {
				t := time.NewTicker(10 * time.Second)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
						logger.Printf("%d of %d agents registered, %d tasks running, %d updates not acknowledged", p.Registered(), cfg.Count, p.RunningTasks(), p.PendingUpdates())
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
	fs.StringVar(&cfg.Resources, "resources", "cpus:8;mem:32768;disk:100000;ports:[31000-32000]", "resources of each agent, Mesos syntax")
	fs.StringVar(&cfg.Attributes, "attributes", "", "attributes of each agent, e.g. 'rack:r1;zone:a'")
	fs.StringVar(&cfg.HostnamePrefix, "hostname_prefix", "sim-agent-", "agents are named <prefix>1..N")
	fs.Var(mesosDuration{&cfg.RetryInterval}, "status_update_retry_interval", "interval at which updates the framework has not acknowledged are resent")
	return cmd
}
