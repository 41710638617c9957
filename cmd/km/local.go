package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/k8sm/k8sm/internal/local"
	"github.com/k8sm/k8sm/internal/mesos/resources"
)

func init() { subcommands = append(subcommands, newLocalCommand) }

func newLocalCommand() *cobra.Command {
	var cfg local.Config
	var network string
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Run a whole km cluster on this machine (etcd, apiserver, controller-manager, Mesos master and agents, scheduler)",
		Long: `Start km etcd, km apiserver, km controller-manager, km mesos master, N
km mesos agents and km scheduler as child processes, each with its log in
DATA-DIR/logs, and print the KUBECONFIG to use once the cluster is ready.

Run as root, each agent gets a network namespace of its own (km-agent-N on
the bridge km0, addresses 198.18.0.2 and up), so that services' endpoints
(HostIP:HostPort) work as on a real cluster. Without root the agents take
127.0.1.N, and services get no endpoints, because the apiserver refuses
loopback endpoint addresses.

A component that dies is restarted with backoff. Ctrl-C, SIGTERM or a closed
terminal (SIGHUP) stops everything in order. Running km local again on the same --data-dir brings
the cluster back with all its objects.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.DataDir == "" {
				home, err := os.UserHomeDir()
				if err != nil {
					return fmt.Errorf("no home directory to keep the cluster in (%v); give one with --data-dir", err)
				}
				cfg.DataDir = filepath.Join(home, ".km")
			}
			dir, err := filepath.Abs(cfg.DataDir)
			if err != nil {
				return err
			}
			cfg.DataDir = dir
			if _, err := resources.Parse(cfg.AgentResources, "*"); err != nil {
				return fmt.Errorf("--agent-resources: %v", err)
			}
			if cfg.AgentAttributes != "" {
				if _, err := resources.ParseAttributes(cfg.AgentAttributes); err != nil {
					return fmt.Errorf("--agent-attributes: %v", err)
				}
			}
			nw, warning, err := local.ChooseNetwork(network)
			if err != nil {
				return err
			}
			if warning != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "km local: warning:", warning)
			}
			cfg.Network = nw
			if cfg.KM, err = os.Executable(); err != nil {
				return err
			}
			cfg.Out = cmd.OutOrStdout()
			cmd.SilenceUsage = true

			// A closed terminal (SIGHUP) stops the cluster in order too, and
			// output to a reader that went away (SIGPIPE) must not kill km
			// local halfway through that stop.
			signal.Ignore(syscall.SIGPIPE)
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			c, err := local.Start(ctx, cfg)
			if err != nil {
				return err
			}
			<-ctx.Done()
			fmt.Fprintln(cfg.Out, "km local: stopping (scheduler and controllers, agents, master, apiserver, etcd)")
			c.Stop()
			fmt.Fprintln(cfg.Out, "km local: stopped; the cluster's state stays in", cfg.DataDir)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory of the cluster's state, certificates, kubeconfig and logs (default ~/.km)")
	fs.IntVar(&cfg.Agents, "agents", 2, "number of Mesos agents")
	fs.StringVar(&cfg.AgentResources, "agent-resources", "cpus:2;mem:4096;ports:[31000-32000]", "resources of each agent, in Mesos' --resources syntax")
	fs.StringVar(&cfg.AgentAttributes, "agent-attributes", "", "attributes of each agent, in Mesos' --attributes syntax (e.g. rack:r1;zone:a)")
	fs.StringVar(&network, "agent-network", "auto", "where agents live: netns (own network namespaces; needs root), loopback (127.0.1.N; services get no endpoints) or auto (netns when root)")
	return cmd
}
