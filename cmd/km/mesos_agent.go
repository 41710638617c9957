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
	mesosSubcommands = append(mesosSubcommands, newMesosAgentCommand)
}

func newMesosAgentCommand() *cobra.Command {
	cfg := agent.Config{
		ExecutorShutdownGracePeriod:   agent.DefaultExecutorShutdownGracePeriod,
		ExecutorRegistrationTimeout:   agent.DefaultExecutorRegistrationTimeout,
		ExecutorReregistrationTimeout: agent.DefaultExecutorReregistrationTimeout,
		RecoveryTimeout:               agent.DefaultRecoveryTimeout,
		StatusUpdateRetryMin:          agent.DefaultStatusUpdateRetryMin,
		ExecutorHeartbeatInterval:     agent.DefaultExecutorHeartbeatInterval,
		RegistrationBackoffFactor:     agent.DefaultRegistrationBackoffFactor,
		RegistrationBackoffMax:        agent.DefaultRegistrationBackoffMax,
	}
	var envJSON string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a Mesos-compatible agent that launches executors for a km mesos master",
		Long: `km mesos agent registers with a km mesos master, launches executors as child
processes in sandboxes under --work_dir with the environment Apache Mesos 1.11
gives them, serves the Mesos v1 executor API (POST /api/v1/executor), fetches
CommandInfo URIs, runs command tasks under a command executor and forwards
status updates until the frameworks acknowledge them.

It checkpoints its agent ID and what it runs in --work_dir: restarted, it comes
back with the same ID, and executors of frameworks that checkpoint survive the
restart. On SIGTERM or SIGINT it shuts every executor down (SHUTDOWN, grace
period, then the whole process group) and exits; no process it started
outlives it. GET /state, /health and /metrics/snapshot answer as Mesos' do.`,
		Example: `  km mesos agent --master=127.0.0.1:5050 --work_dir=/var/lib/km/agent \
    --resources='cpus:4;mem:4096;ports:[31000-32000]' --attributes='rack:r1;zone:a'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, err := agent.ParseExecutorEnvironment(envJSON)
			if err != nil {
				return err
			}
			cfg.ExecutorEnv = env
			cfg.Logger = log.New(os.Stderr, "km mesos agent: ", log.LstdFlags|log.Lmicroseconds)
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			cfg.Logger.Printf("agent %s on %s, master %s, work dir %s", a.Hostname(), a.Endpoint(), cfg.Master, cfg.WorkDir)
			return a.Run(ctx)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Master, "master", "", "host:port of the km mesos master (required)")
	fs.StringVar(&cfg.IP, "ip", "127.0.0.1", "IP address to listen on")
	fs.IntVar(&cfg.Port, "port", agent.DefaultPort, "port to listen on")
	fs.StringVar(&cfg.AdvertiseIP, "advertise_ip", "", "IP address the master and executors use to reach the agent (default: --ip)")
	fs.StringVar(&cfg.Hostname, "hostname", "", "hostname the agent reports (default: the name of the advertised IP, else the IP)")
	fs.StringVar(&cfg.Resources, "resources", "", "resources to offer in Mesos syntax, e.g. 'cpus:4;mem:4096;disk:10000;ports:[31000-32000]'; cpus, mem, disk and ports not given are detected")
	fs.StringVar(&cfg.Attributes, "attributes", "", "attributes in Mesos syntax, e.g. 'rack:r1;zone:a'")
	fs.StringVar(&cfg.DefaultRole, "default_role", "*", "role of the resources given without one")
	fs.StringVar(&cfg.WorkDir, "work_dir", "", "directory for sandboxes and checkpoints (required)")
	fs.StringVar(&envJSON, "executor_environment_variables", "", `JSON object of variables added to every executor's environment, e.g. '{"PATH":"/bin:/usr/bin"}'`)
	fs.Var(mesosDuration{&cfg.ExecutorShutdownGracePeriod}, "executor_shutdown_grace_period", "time an executor has to exit after SHUTDOWN before its process group is killed (an ExecutorInfo's shutdown_grace_period overrides it)")
	fs.Var(mesosDuration{&cfg.ExecutorRegistrationTimeout}, "executor_registration_timeout", "time an executor has to subscribe before it is destroyed and its tasks fail")
	fs.Var(mesosDuration{&cfg.ExecutorReregistrationTimeout}, "executor_reregistration_timeout", "time recovered executors have to re-subscribe after an agent restart (at most 15secs; MESOS_SUBSCRIPTION_BACKOFF_MAX)")
	fs.Var(mesosDuration{&cfg.RecoveryTimeout}, "recovery_timeout", "time executors of checkpointing frameworks wait for a restarted agent (MESOS_RECOVERY_TIMEOUT)")
	fs.Var(mesosDuration{&cfg.StatusUpdateRetryMin}, "status_update_retry_interval_min", "first retry interval of a status update the framework has not acknowledged (doubles up to 10mins)")
	fs.Var(mesosDuration{&cfg.ExecutorHeartbeatInterval}, "executor_heartbeat_interval", "interval of HEARTBEAT events to subscribed executors")
	fs.Var(mesosDuration{&cfg.RegistrationBackoffFactor}, "registration_backoff_factor", "first wait before registering again with the master; it doubles up to --registration_backoff_max")
	fs.Var(mesosDuration{&cfg.RegistrationBackoffMax}, "registration_backoff_max", "longest wait between two registration attempts")
	return cmd
}
