package main

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/k8sm/k8sm/internal/controlplane/certs"
)

func init() { subcommands = append(subcommands, newCertsCommand) }

func newCertsCommand() *cobra.Command {
	var o certs.Options
	var ips, names []string
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make the cluster's CA, certificates and kubeconfigs (once; kept after)",
		Long: `Make what a km cluster needs to authenticate, in --cert-dir: the cluster CA,
the apiserver's serving certificate, client certificates with kubeconfigs
(admin.kubeconfig is in system:masters; controller-manager, scheduler and
executor ones for the components), the service-account signing key, and the
front-proxy CA and client. What is there is kept, so running it again is
safe; the kubeconfigs are rewritten with --apiserver-url, and the serving
certificate is made again when it does not cover the addresses asked for.`,
		Args: cobra.NoArgs,
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
	fs.StringSliceVar(&ips, "apiserver-ip", []string{"10.96.0.1"}, "IPs of the apiserver's serving certificate besides 127.0.0.1 (the first service IP is one)")
	fs.StringSliceVar(&names, "apiserver-name", nil, "DNS names of the apiserver's serving certificate besides localhost and kubernetes.default.svc...")
	return cmd
}
