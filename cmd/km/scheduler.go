package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/masterstate"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/schedclient"
	"github.com/k8sm/k8sm/internal/scheduler"
	"github.com/k8sm/k8sm/internal/scheduler/placement"
	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

func init() {
	subcommands = append(subcommands, newSchedulerCommand)
}

func newSchedulerCommand() *cobra.Command {
	cfg := scheduler.DefaultConfig()
	var (
		kubeconfig, iniPath, strategy, mapping, kmPath, executorKubeconfig, advertise, encoding string
		execCPUs, execMem                                                                       float64
		podRoles                                                                                []string
	)
	cmd := &cobra.Command{
		Use:   "scheduler",
		Short: "Run the km scheduler: a Mesos framework that runs Kubernetes pods as Mesos tasks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := log.New(os.Stderr, "km scheduler: ", log.LstdFlags|log.Lmicroseconds)
			if iniPath != "" {
				if err := cfg.LoadINI(iniPath); err != nil {
					return err
				}
			}
			var err error
			if cmd.Flags().Changed("placement") || iniPath == "" {
				if cfg.Strategy, err = placement.ParseStrategy(strategy); err != nil {
					return fmt.Errorf("--placement: %v", err)
				}
			}
			switch podtask.PortMapping(mapping) {
			case podtask.Wildcard, podtask.Fixed:
				cfg.PortMapping = podtask.PortMapping(mapping)
			default:
				return fmt.Errorf("--port-mapping %q: use wildcard or fixed", mapping)
			}
			cfg.DefaultPodRoles = podRoles
			if len(cfg.DefaultPodRoles) == 0 {
				cfg.DefaultPodRoles = cfg.Roles
			}
			if len(cfg.Masters) == 0 {
				return fmt.Errorf("--mesos-master is required (host:port of a Mesos master, e.g. 127.0.0.1:5050)")
			}
			rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return fmt.Errorf("--kubeconfig: %v", err)
			}
			rc.QPS, rc.Burst = 1000, 2000
			rc.UserAgent = "km-scheduler"
			client, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return err
			}
			enc, err := codec.ParseEncoding(encoding)
			if err != nil {
				return fmt.Errorf("--mesos-encoding: %v", err)
			}

			// The executor: km itself, from --km-path on the agents, or
			// fetched from this scheduler; its kubeconfig is fetched too.
			host, port, err := net.SplitHostPort(cfg.HTTPAddress)
			if err != nil {
				return fmt.Errorf("--address %q is not host:port", cfg.HTTPAddress)
			}
			if advertise == "" {
				advertise = host
			}
			base := "http://" + net.JoinHostPort(advertise, port) + "/static/"
			cfg.Executor.CPUs, cfg.Executor.MemMB = execCPUs, execMem
			cfg.Executor.ShutdownGracePeriod = 90 * time.Second
			cfg.Executor.Args = []string{"executor", "--kubeconfig=executor.kubeconfig"}
			if kmPath != "" {
				cfg.Executor.Command = kmPath
			} else {
				cfg.Executor.Command = "./km"
				cfg.Executor.URIs = append(cfg.Executor.URIs, &mesospb.CommandInfo_URI{Value: proto.String(base + "km"), Executable: proto.Bool(true)})
			}
			if executorKubeconfig != "" {
				cfg.Executor.URIs = append(cfg.Executor.URIs, &mesospb.CommandInfo_URI{Value: proto.String(base + "executor.kubeconfig"), Extract: proto.Bool(false)})
			}

			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			id, err := scheduler.LoadFrameworkID(ctx, client)
			if err != nil {
				return fmt.Errorf("reading the stored framework ID from the apiserver: %v", err)
			}
			hostname, _ := os.Hostname()
			s := scheduler.New(cfg, client, nil, logger)
			mc, err := schedclient.New(schedclient.Config{Masters: cfg.Masters, Encoding: enc,
				FrameworkInfo: cfg.FrameworkInfo(id, hostname), Logger: logger})
			if err != nil {
				return err
			}
			s.SetMesos(mc)
			s.SetAgentLister(scheduler.AgentListerFunc(func(ctx context.Context) ([]masterstate.Agent, error) {
				leader := mc.Leader()
				if leader == nil {
					return nil, errors.New("not subscribed to a master yet")
				}
				ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				return masterstate.Client{}.Agents(ctx, leader)
			}))

			mux := http.NewServeMux()
			mux.Handle("/", s.Handler())
			self, _ := os.Executable()
			mux.HandleFunc("/static/km", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, self) })
			if executorKubeconfig != "" {
				mux.HandleFunc("/static/executor.kubeconfig", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, executorKubeconfig) })
			}
			ln, err := net.Listen("tcp", cfg.HTTPAddress)
			if err != nil {
				return fmt.Errorf("port %s on %s is already in use (another scheduler?); choose another with --address", port, host)
			}
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
			go srv.Serve(ln)
			defer srv.Close()

			errc := make(chan error, 2)
			go func() { errc <- s.Run(ctx) }()
			go func() { errc <- mc.Run(ctx, s) }()
			logger.Printf("scheduling pods of schedulerName %q on Mesos %s; HTTP on %s", cfg.SchedulerName, strings.Join(cfg.Masters, ","), cfg.HTTPAddress)
			select {
			case <-ctx.Done():
				return nil
			case err := <-errc:
				return err
			}
		},
	}
	fs := cmd.Flags()
	fs.StringSliceVar(&cfg.Masters, "mesos-master", nil, "Mesos master(s), host:port (required)")
	fs.StringVar(&encoding, "mesos-encoding", "protobuf", "encoding of the Mesos scheduler API: protobuf or json")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the apiserver")
	fs.StringVar(&cfg.SchedulerName, "scheduler-name", cfg.SchedulerName, "schedulerName of the pods this scheduler places")
	fs.StringSliceVar(&cfg.Roles, "mesos-role", cfg.Roles, "Mesos roles of the framework")
	fs.StringSliceVar(&podRoles, "mesos-default-pod-roles", nil, "roles pods take resources from unless annotated (default: --mesos-role)")
	fs.StringVar(&cfg.FrameworkName, "framework-name", cfg.FrameworkName, "Mesos framework name")
	fs.StringVar(&cfg.User, "mesos-user", cfg.User, "Unix user of the tasks")
	fs.DurationVar(&cfg.FailoverTimeout, "failover-timeout", cfg.FailoverTimeout, "time Mesos keeps the framework's tasks while the scheduler is away")
	fs.StringVar(&strategy, "placement", "binpack", "placement strategy: binpack or spread")
	fs.StringVar(&mapping, "port-mapping", "wildcard", "default port mapping: wildcard (hostPort 0 gets a port from the offer) or fixed")
	fs.Float64Var(&cfg.Defaults.CPUs, "default-container-cpu-limit", cfg.Defaults.CPUs, "cpus of a container that declares neither requests nor limits")
	fs.Float64Var(&cfg.Defaults.MemMB, "default-container-mem-limit", cfg.Defaults.MemMB, "MB of a container that declares neither requests nor limits")
	fs.Float64Var(&execCPUs, "executor-cpus", 0.25, "cpus the executor takes on each agent")
	fs.Float64Var(&execMem, "executor-mem", 128, "MB the executor takes on each agent")
	fs.StringVar(&kmPath, "km-path", "", "path of km on the agents; empty: the agents fetch it from this scheduler")
	fs.StringVar(&executorKubeconfig, "executor-kubeconfig", "", "kubeconfig the executors use, served to them by this scheduler")
	fs.StringVar(&advertise, "advertise-address", "", "address the agents reach this scheduler at (default: --address's host)")
	fs.DurationVar(&cfg.OfferTTL, "offer-ttl", cfg.OfferTTL, "how long an unused offer is held before it is declined")
	fs.Float64Var(&cfg.RefuseSeconds, "refuse-seconds", cfg.RefuseSeconds, "how long declined resources are refused")
	fs.DurationVar(&cfg.InitialPodBackoff, "initial-pod-backoff", cfg.InitialPodBackoff, "first delay before retrying a pod that found no place")
	fs.DurationVar(&cfg.MaxPodBackoff, "max-pod-backoff", cfg.MaxPodBackoff, "longest delay between retries of a pod")
	fs.DurationVar(&cfg.ReconcileInterval, "reconcile-interval", cfg.ReconcileInterval, "time between implicit reconciliations")
	fs.StringVar(&cfg.HTTPAddress, "address", cfg.HTTPAddress, "address of /healthz, /metrics and /debug")
	fs.StringVar(&iniPath, "scheduler-config", "", "INI file with a [scheduler] section (offer-ttl, refuse-seconds, ...)")
	return cmd
}
