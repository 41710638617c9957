package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k8sm/k8sm/internal/controllers/endpoints"
	"github.com/k8sm/k8sm/internal/controlplane/certs"
	"github.com/k8sm/k8sm/internal/controlplane/etcd"
	"github.com/k8sm/k8sm/internal/controlplane/kube"
	"github.com/k8sm/k8sm/internal/controlplane/kubeflags"
)

func init() {
	subcommands = append(subcommands, newEtcdCommand, newCertsCommand, newAPIServerCommand, newControllerManagerCommand)
}

func newEtcdCommand() *cobra.Command {
	var c etcd.Config
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Run the embedded etcd 3.6 (state kept in --data-dir across restarts)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			ready := make(chan struct{})
			go func() {
				select {
				case <-ready:
					log.Printf("km etcd: serving clients on %s (data in %s)", strings.Join(c.ClientURLs, ","), c.DataDir)
				case <-ctx.Done():
				}
			}()
			return etcd.Run(ctx, c, ready)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&c.Name, "name", "km", "member name")
	fs.StringVar(&c.DataDir, "data-dir", "km-etcd", "directory of etcd's data")
	fs.StringSliceVar(&c.ClientURLs, "listen-client-urls", []string{"http://127.0.0.1:2379"}, "URLs to serve clients on")
	fs.StringVar(&c.PeerURL, "listen-peer-urls", "http://127.0.0.1:2380", "URL for peers")
	fs.StringVar(&c.LogLevel, "log-level", "warn", "etcd log level")
	return cmd
}

func newCertsCommand() *cobra.Command {
	var o certs.Options
	var ips, names []string
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make the cluster's CA, certificates and kubeconfigs (once; kept after)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return fmt.Errorf("--apiserver-ip %q is not an IP address", s)
				}
				o.APIServerIPs = append(o.APIServerIPs, ip)
			}
			o.APIServerNames = names
			f, err := certs.Ensure(o)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "certificates in %s; admin kubeconfig: %s\n", o.Dir, f.Kubeconfigs["admin"])
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Dir, "cert-dir", "km-certs", "directory for the certificates and kubeconfigs")
	fs.StringVar(&o.APIServerURL, "apiserver-url", "https://127.0.0.1:6443", "URL the kubeconfigs point at")
	fs.StringSliceVar(&ips, "apiserver-ip", []string{"10.96.0.1"}, "extra IPs of the apiserver's serving certificate")
	fs.StringSliceVar(&names, "apiserver-name", nil, "extra DNS names of the apiserver's serving certificate")
	return cmd
}

// upstreamCommand passes its arguments to an upstream component, with km's
// --cert-dir filling in the certificate flags.
func upstreamCommand(use, short string, run func(args []string) error) *cobra.Command {
	return &cobra.Command{
		Use:                use,
		Short:              short,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				if a == "-h" || a == "--help" {
					fmt.Fprintln(cmd.OutOrStdout(), short+".\n\nkm flags: --cert-dir DIR (certificates made by `km certs`, default km-certs). Every other flag is the upstream component's; km fills in defaults for those not given.")
				}
			}
			return run(args)
		},
	}
}

func certFiles(args []string) ([]string, certs.Files, error) {
	args, dir, err := kubeflags.TakeFlag(args, "cert-dir", "km-certs")
	if err != nil {
		return nil, certs.Files{}, err
	}
	f := certs.FilesIn(dir)
	if _, err := os.Stat(f.CACert); err != nil {
		return nil, f, fmt.Errorf("no certificates in %s: run `km certs --cert-dir %s` first, or point --cert-dir at them", dir, dir)
	}
	return args, f, nil
}

func newAPIServerCommand() *cobra.Command {
	return upstreamCommand("apiserver", "Run the upstream kube-apiserver (k8s.io/kubernetes v1.36.3)", func(args []string) error {
		args, f, err := certFiles(args)
		if err != nil {
			return err
		}
		args = kubeflags.WithDefaults(args, kubeflags.APIServerDefaults(f))
		if err := kubeflags.CheckPortFree("apiserver", kubeflags.Lookup(args, "bind-address"), kubeflags.Lookup(args, "secure-port"), "--secure-port"); err != nil {
			return err
		}
		if code := kube.RunAPIServer(args); code != 0 {
			os.Exit(code)
		}
		return nil
	})
}

func newControllerManagerCommand() *cobra.Command {
	return upstreamCommand("controller-manager", "Run the upstream kube-controller-manager with km's endpoints controller (--host-port-endpoints)", func(args []string) error {
		args, hp, err := kubeflags.TakeFlag(args, "host-port-endpoints", "true")
		if err != nil {
			return err
		}
		hostPort := hp != "false"
		args, f, err := certFiles(args)
		if err != nil {
			return err
		}
		args = kubeflags.WithDefaults(args, kubeflags.ControllerManagerDefaults(f, hostPort))
		if err := kubeflags.CheckPortFree("controller-manager", kubeflags.Lookup(args, "bind-address"), kubeflags.Lookup(args, "secure-port"), "--secure-port"); err != nil {
			return err
		}
		// The upstream controller-manager does not always return on SIGTERM
		// (with leader election off it blocks for ever): make sure the
		// process ends, after a moment for a clean shutdown.
		exitOnSignal(3 * time.Second)
		if hostPort {
			// km's endpoints controller runs beside the upstream ones; in
			// vanilla mode the stock controllers do the work.
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeflags.Lookup(args, "kubeconfig"))
			if err != nil {
				return fmt.Errorf("--kubeconfig: %v", err)
			}
			cfg.UserAgent = "km-endpoints-controller"
			client, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			factory := informers.NewSharedInformerFactory(client, 0)
			c := endpoints.New(client, factory, true)
			factory.Start(ctx.Done())
			go c.Run(ctx, 4)
		}
		if code := kube.RunControllerManager(args); code != 0 {
			os.Exit(code)
		}
		return nil
	})
}

// exitOnSignal ends the process a little after SIGTERM or SIGINT, whatever
// the upstream component does with the signal.
func exitOnSignal(grace time.Duration) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ch
		time.Sleep(grace)
		os.Exit(0)
	}()
}
