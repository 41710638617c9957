package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/k8sm/k8sm/internal/minimesos/agent"
	"github.com/k8sm/k8sm/internal/minimesos/commandexec"
)

func init() {
	mesosSubcommands = append(mesosSubcommands, newMesosAgentCommand, newCommandExecutorCommand)
}

func newMesosAgentCommand() *cobra.Command {
	cfg := agent.Config{}
	var envJSON string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a Mesos-compatible agent that launches executors for a km mesos master",
		Long: `km mesos agent registers with a km mesos master, launches executors as child
processes in sandboxes under --work_dir with the environment Apache Mesos gives
them, and serves the Mesos v1 executor API (POST /api/v1/executor).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if envJSON != "" {
				if err := json.Unmarshal([]byte(envJSON), &cfg.ExecutorEnv); err != nil {
					return fmt.Errorf("--executor_environment_variables must be a JSON object of strings: %v", err)
				}
			}
			cfg.Logger = log.New(os.Stderr, "km mesos agent: ", log.LstdFlags|log.Lmicroseconds)
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			cfg.Logger.Printf("agent on %s, master %s, work dir %s", a.Endpoint(), cfg.Master, cfg.WorkDir)
			return a.Run(ctx)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Master, "master", "", "host:port of the Mesos master (required)")
	fs.StringVar(&cfg.IP, "ip", "127.0.0.1", "IP address to listen on")
	fs.IntVar(&cfg.Port, "port", 5051, "port to listen on")
	fs.StringVar(&cfg.AdvertiseIP, "advertise_ip", "", "IP address executors and the master use to reach the agent (default: --ip)")
	fs.StringVar(&cfg.Hostname, "hostname", "", "hostname the agent reports (default: the advertised IP)")
	fs.StringVar(&cfg.Resources, "resources", "", "resources to offer, e.g. cpus:4;mem:4096;ports:[31000-32000] (default: what the machine has)")
	fs.StringVar(&cfg.Attributes, "attributes", "", "attributes, e.g. rack:r1;zone:a")
	fs.StringVar(&cfg.DefaultRole, "default_role", "*", "role of resources given without one")
	fs.StringVar(&cfg.WorkDir, "work_dir", "", "directory for sandboxes and checkpoints (required)")
	fs.StringVar(&envJSON, "executor_environment_variables", "", "JSON object of variables added to every executor's environment")
	cfg.ExecutorShutdownGracePeriod = 5 * time.Second
	fs.Var(mesosDuration{&cfg.ExecutorShutdownGracePeriod}, "executor_shutdown_grace_period", "time an executor has to exit after SHUTDOWN before its processes are killed")
	cfg.ExecutorRegistrationTimeout = time.Minute
	fs.Var(mesosDuration{&cfg.ExecutorRegistrationTimeout}, "executor_registration_timeout", "time an executor has to subscribe")
	cfg.ExecutorReregistrationTimeout = 2 * time.Second
	fs.Var(mesosDuration{&cfg.ExecutorReregistrationTimeout}, "executor_reregistration_timeout", "backoff cap for executors reconnecting (MESOS_SUBSCRIPTION_BACKOFF_MAX)")
	cfg.RecoveryTimeout = 15 * time.Minute
	fs.Var(mesosDuration{&cfg.RecoveryTimeout}, "recovery_timeout", "time executors of checkpointing frameworks wait for the agent to come back")
	cfg.StatusUpdateRetryMin = 10 * time.Second
	fs.Var(mesosDuration{&cfg.StatusUpdateRetryMin}, "status_update_retry_interval_min", "first retry interval of an unacknowledged status update")
	cfg.RegistrationBackoffMax = 15 * time.Second
	fs.Var(mesosDuration{&cfg.RegistrationBackoffMax}, "registration_backoff_max", "cap of the backoff between registration attempts")
	return cmd
}

func newCommandExecutorCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "command-executor",
		Short:  "The built-in command executor (started by km mesos agent for command tasks)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return commandexec.Run(ctx, log.New(os.Stderr, "command executor: ", log.LstdFlags|log.Lmicroseconds))
		},
	}
}
