package main

import (
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/k8sm/k8sm/internal/controlplane/kube"
	"github.com/k8sm/k8sm/internal/controlplane/kubeflags"
)

func init() { subcommands = append(subcommands, newAPIServerCommand) }

func newAPIServerCommand() *cobra.Command {
	return upstreamCommand("apiserver", "Run the upstream kube-apiserver (k8s.io/kubernetes v1.36.3)", certDirFlagHelp,
		func(args []string) error {
			args, f, err := takeCertDir(args)
			if err != nil {
				return err
			}
			args = kubeflags.WithDefaults(args, kubeflags.APIServerDefaults(f, args))
			if err := kubeflags.CheckPortFree("apiserver", kubeflags.Lookup(args, "bind-address"), kubeflags.Lookup(args, "secure-port"), "--secure-port"); err != nil {
				return err
			}
			// A normal stop drains in a second or two; one whose etcd went
			// first waits on storage for ever (seen: minutes). Bound it.
			exitAfterSignal("apiserver", 30*time.Second)
			if code := kube.RunAPIServer(args); code != 0 {
				os.Exit(code)
			}
			return nil
		}, kube.RunAPIServer)
}
