package main

// Helpers of the commands that run an upstream Kubernetes component (km
// apiserver, km controller-manager): km's flags are taken out, the rest go
// to the upstream command as they are.

import (
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/k8sm/k8sm/internal/controlplane/certs"
	"github.com/k8sm/k8sm/internal/controlplane/kube"
	"github.com/k8sm/k8sm/internal/controlplane/kubeflags"
)

// upstreamCommand passes its arguments to run; kmFlags documents the flags
// km adds to the upstream ones, and upstream runs the upstream command
// as it is (for its help).
func upstreamCommand(use, short, kmFlags string, run func(args []string) error, upstream func(args []string) int) *cobra.Command {
	return &cobra.Command{
		Use:                use + " [flags of the upstream component]",
		Short:              short,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				if a == "-h" || a == "--help" {
					fmt.Fprintf(cmd.OutOrStdout(), "%s.\n\nkm's flags:\n%s\nEvery other flag is the upstream component's (below); km fills in defaults\nfor those not given.\n\n", short, kmFlags)
					os.Exit(upstream([]string{"--help"}))
				}
			}
			if v, ok := kube.VersionStamped(); !ok {
				log.Printf("km %s: WARNING: this km was built without the Kubernetes version (it reports %q), and kubectl refuses such a server; build km with `make build`", use, v)
			}
			return run(args)
		},
	}
}

// certDirFlagHelp documents --cert-dir.
const certDirFlagHelp = "  --cert-dir DIR   certificates and kubeconfigs made by `km certs` (default km-certs)\n"

// takeCertDir takes --cert-dir out of args and names the files in it.
func takeCertDir(args []string) ([]string, certs.Files, error) {
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

// exitAfterSignal ends the process grace after SIGTERM or SIGINT, whatever
// the upstream component still does, so that a stop is never stuck.
func exitAfterSignal(component string, grace time.Duration) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ch
		time.Sleep(grace)
		log.Printf("km %s: still not stopped %v after the signal; exiting", component, grace)
		os.Exit(1)
	}()
}
