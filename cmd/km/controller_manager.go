package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/k8sm/k8sm/internal/controllers/endpoints"
	"github.com/k8sm/k8sm/internal/controlplane/kube"
	"github.com/k8sm/k8sm/internal/controlplane/kubeflags"
)

func init() { subcommands = append(subcommands, newControllerManagerCommand) }

const controllerManagerFlagsHelp = certDirFlagHelp +
	"  --host-port-endpoints[=true|false]   services' endpoints are HostIP:HostPort of their pods, with the host\n" +
	"                   ports km's scheduler assigned (default true); false: PodIP:ContainerPort, from the\n" +
	"                   stock endpoints controllers (the cluster then needs routable pod IPs)\n"

func newControllerManagerCommand() *cobra.Command {
	return upstreamCommand("controller-manager",
		"Run the upstream kube-controller-manager, with km's endpoints controller (HostIP:HostPort endpoints)",
		controllerManagerFlagsHelp, runControllerManager, kube.RunControllerManager)
}

func runControllerManager(args []string) error {
	args, hostPort, err := kubeflags.TakeBoolFlag(args, "host-port-endpoints", true)
	if err != nil {
		return err
	}
	args, f, err := takeCertDir(args)
	if err != nil {
		return err
	}
	args = kubeflags.WithDefaults(args, kubeflags.ControllerManagerDefaults(f))
	if hostPort {
		// km's endpoints controller replaces the stock endpoints and
		// endpointslice controllers (the endpointslice mirroring
		// controller, for services without selectors, stays).
		if args, err = kubeflags.WithoutStockEndpoints(args); err != nil {
			return err
		}
	}
	// With --host-port-endpoints=false the stock controllers run as they
	// are (PodIP:ContainerPort, with everything upstream does: topology,
	// traffic distribution...); km's controller does not run.
	if err := kubeflags.CheckPortFree("controller-manager", kubeflags.Lookup(args, "bind-address"), kubeflags.Lookup(args, "secure-port"), "--secure-port"); err != nil {
		return err
	}
	client, err := endpointsClient(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	kmDone := make(chan struct{})
	go func() {
		defer close(kmDone)
		if !waitUpstreamStarted(ctx, args) {
			return
		}
		if hostPort {
			runEndpointsController(ctx, client, args)
		} else {
			deleteKMSlices(ctx, client)
			<-ctx.Done()
		}
	}()
	// The stock kube-controller-manager dies of SIGTERM: it handles
	// signals only with the alpha feature gate
	// ControllerManagerReleaseLeaderElectionLockOnExit. km's handler above
	// (which stops km's controller and releases its lease) takes that
	// default away, so the process ends once km's controller has stopped,
	// or, with the gate on, when the upstream controllers return.
	if strings.Contains(kubeflags.Lookup(args, "feature-gates"), "ControllerManagerReleaseLeaderElectionLockOnExit=true") {
		exitAfterSignal("controller-manager", 30*time.Second)
	} else {
		go func() {
			<-ctx.Done()
			select {
			case <-kmDone:
			case <-time.After(5 * time.Second):
			}
			log.Printf("km controller-manager: stopped")
			os.Exit(0)
		}()
	}
	if code := kube.RunControllerManager(args); code != 0 {
		os.Exit(code)
	}
	return nil
}

// waitUpstreamStarted waits until the upstream controller-manager serves
// on its secure port, which it does only after it has set up logging.
// klog's global logger is replaced then without a lock, and km's
// controller (its event recorder, informers and queue all log through
// klog) crashed reading it halfway through that replacement. It reports
// false if ctx ends first.
func waitUpstreamStarted(ctx context.Context, args []string) bool {
	port := kubeflags.Lookup(args, "secure-port")
	if port == "0" {
		// Serving is off, so there is nothing to wait for; logging is
		// set up within the first moments of the upstream's start.
		select {
		case <-ctx.Done():
			return false
		case <-time.After(3 * time.Second):
			return true
		}
	}
	host := kubeflags.Lookup(args, "bind-address")
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, port)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// endpointsClient is the client of km's endpoints controller: the
// controller-manager's identity and rate limits.
func endpointsClient(args []string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags(kubeflags.Lookup(args, "master"), kubeflags.Lookup(args, "kubeconfig"))
	if err != nil {
		return nil, fmt.Errorf("km controller-manager: --kubeconfig: %v", err)
	}
	cfg.UserAgent = "km-endpoints-controller"
	cfg.QPS, cfg.Burst = 20, 30 // upstream's --kube-api-qps and --kube-api-burst defaults
	if v, err := strconv.ParseFloat(kubeflags.Lookup(args, "kube-api-qps"), 32); err == nil {
		cfg.QPS = float32(v)
	}
	if v, err := strconv.Atoi(kubeflags.Lookup(args, "kube-api-burst")); err == nil {
		cfg.Burst = v
	}
	return kubernetes.NewForConfig(cfg)
}

func intFlag(args []string, name string, def int) int {
	if v, err := strconv.Atoi(kubeflags.Lookup(args, name)); err == nil && v > 0 {
		return v
	}
	return def
}

// runEndpointsController runs km's endpoints controller until ctx ends;
// with --leader-elect=true only while it holds a lease of its own (the
// upstream controllers' lease is not reachable from here), so that one
// controller of an HA pair writes endpoints.
func runEndpointsController(ctx context.Context, client kubernetes.Interface, args []string) {
	run := func(ctx context.Context) {
		factory := informers.NewSharedInformerFactory(client, 0)
		c := endpoints.New(client, factory, endpoints.Options{
			HostPort:             true,
			MaxEndpointsPerSlice: intFlag(args, "max-endpoints-per-slice", endpoints.DefaultMaxEndpointsPerSlice),
		})
		factory.Start(ctx.Done())
		c.Run(ctx, intFlag(args, "concurrent-endpoint-syncs", 5))
	}
	if le, _ := strconv.ParseBool(kubeflags.Lookup(args, "leader-elect")); !le {
		run(ctx)
		return
	}
	host, _ := os.Hostname()
	ns := kubeflags.Lookup(args, "leader-elect-resource-namespace")
	if ns == "" {
		ns = "kube-system"
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, ns, "km-endpoints-controller",
		client.CoreV1(), client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: host + "_" + string(uuid.NewUUID())})
	if err != nil {
		log.Fatalf("km controller-manager: endpoints controller lease: %v", err)
	}
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock:          lock,
		Name:          "km-endpoints-controller",
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: run,
			OnStoppedLeading: func() {
				if ctx.Err() == nil {
					// As upstream: a controller that lost its lease
					// exits, and its supervisor starts it again.
					log.Fatalf("km controller-manager: lost the km-endpoints-controller lease")
				}
			},
		},
	})
}

// deleteKMSlices removes the slices km's controller wrote in an earlier
// run with host-port endpoints: the stock controllers leave slices of
// another manager alone, and consumers would keep using them.
func deleteKMSlices(ctx context.Context, client kubernetes.Interface) {
	backoff := wait.Backoff{Duration: time.Second, Factor: 2, Steps: 1 << 30, Cap: 30 * time.Second}
	wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		n, err := endpoints.DeleteOwnSlices(ctx, client)
		if err != nil {
			log.Printf("km controller-manager: deleting the endpoint slices of km's host-port endpoints controller: %v (retrying)", err)
			return false, nil
		}
		if n > 0 {
			log.Printf("km controller-manager: deleted %d endpoint slices of km's host-port endpoints controller (--host-port-endpoints=false)", n)
		}
		return true, nil
	})
}
