package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k8sm/k8sm/internal/executor"
	"github.com/k8sm/k8sm/internal/executor/kubeletapi"
	"github.com/k8sm/k8sm/internal/executor/runtime"
	"github.com/k8sm/k8sm/internal/mesos/execclient"
)

func init() {
	subcommands = append(subcommands, newExecutorCommand)
}

func newExecutorCommand() *cobra.Command {
	var kubeconfig, cgroupParent string
	var kubeletPort int
	var restartBackoff, suicideTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "executor",
		Short: "Run pods on a Mesos agent (started by the agent for km's scheduler; the kubelet's role)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := log.New(os.Stderr, "km executor: ", log.LstdFlags|log.Lmicroseconds)
			mcfg, err := execclient.ConfigFromEnv(os.Getenv)
			if err != nil {
				return err
			}
			mcfg.Logger = logger
			u, err := url.Parse(mcfg.AgentURL)
			if err != nil {
				return fmt.Errorf("agent URL %q: %v", mcfg.AgentURL, err)
			}
			hostIP := u.Hostname()
			rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return fmt.Errorf("--kubeconfig %s: %v (the scheduler serves the executor's kubeconfig with --executor-kubeconfig)", kubeconfig, err)
			}
			rc.UserAgent = "km-executor"
			client, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return err
			}
			mc := execclient.New(mcfg)
			sandbox := mcfg.Sandbox
			if sandbox == "" {
				sandbox, _ = os.Getwd()
			}
			// Containers an earlier run of this executor left (it died
			// without stopping them) go before new ones start, and before
			// the agent hears from us: it may send tasks at once.
			if n, err := executor.ReapEarlierRuns(sandbox, 10*time.Second, logger); err != nil {
				logger.Printf("containers of earlier runs not ended: %v", err)
			} else if n > 0 {
				logger.Printf("ended %d container process groups of earlier executor runs", n)
			}
			e := executor.New(executor.Config{Client: client, Mesos: mc, Runtime: runtime.NewProcess(cgroupParent),
				Sandbox: sandbox, HostIP: hostIP, RestartBackoff: restartBackoff, IdleTimeout: suicideTimeout, Logger: logger})

			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			// The kubelet API, for kubectl logs through the apiserver.
			addr := net.JoinHostPort(hostIP, strconv.Itoa(kubeletPort))
			caPEM, caErr := clusterCA(rc)
			if tlsCfg, err := kubeletapi.SelfSignedTLS(hostIP); err != nil {
				logger.Printf("kubelet API not served: %v", err)
			} else if caErr != nil {
				logger.Printf("kubelet API not served: it serves only the apiserver, known by the cluster CA, and %v", caErr)
			} else if err := kubeletapi.RequireClientCerts(tlsCfg, caPEM); err != nil {
				logger.Printf("kubelet API not served: %v", err)
			} else if ln, err := net.Listen("tcp", addr); err != nil {
				logger.Printf("kubelet API not served: port %d on %s is in use (another executor of this agent?): %v", kubeletPort, hostIP, err)
			} else {
				srv := &http.Server{Handler: kubeletapi.Authorize(kubeletapi.Handler(e)), TLSConfig: tlsCfg, ReadHeaderTimeout: 30 * time.Second}
				go srv.ServeTLS(ln, "", "")
				defer srv.Close()
			}
			go e.Run(ctx)
			done := make(chan error, 1)
			go func() { done <- mc.Run(ctx, e) }()
			select {
			case <-ctx.Done():
				e.Shutdown(context.Background())
				return nil
			case <-e.Done():
				// SHUTDOWN (every pod is stopped) or idle: give the
				// terminal updates a moment to reach the agent.
				time.Sleep(500 * time.Millisecond)
				return nil
			case err := <-done:
				// The agent is gone for good, or told us to shut down:
				// no pod outlives the executor.
				e.Shutdown(context.Background())
				if err != nil && !errors.Is(err, context.Canceled) {
					logger.Printf("%v", err)
				}
				return nil
			}
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&kubeconfig, "kubeconfig", "executor.kubeconfig", "kubeconfig of the apiserver (pod status, events)")
	fs.IntVar(&kubeletPort, "kubelet-port", 10250, "port of the kubelet API (logs) on the agent's address")
	fs.DurationVar(&restartBackoff, "restart-backoff", 10*time.Second, "first delay before restarting a failed container (doubles up to 5m)")
	fs.DurationVar(&suicideTimeout, "suicide-timeout", 20*time.Minute, "exit after running no pod for this long (0: never); the scheduler's next pod on the agent starts a new executor")
	fs.StringVar(&cgroupParent, "cgroup-parent", "km", "cgroup under which containers get their memory and cpu limits")
	return cmd
}

// clusterCA is the CA of the executor's kubeconfig: the kubelet API trusts
// the client certificates it signed (the apiserver's among them).
func clusterCA(rc *rest.Config) ([]byte, error) {
	if len(rc.TLSClientConfig.CAData) > 0 {
		return rc.TLSClientConfig.CAData, nil
	}
	if rc.TLSClientConfig.CAFile != "" {
		b, err := os.ReadFile(rc.TLSClientConfig.CAFile)
		if err != nil {
			return nil, fmt.Errorf("the kubeconfig's CA file: %v", err)
		}
		return b, nil
	}
	return nil, errors.New("the executor's kubeconfig names no CA (certificate-authority-data); give it one")
}
