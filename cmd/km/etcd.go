package main

import (
	"context"
	"log"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/k8sm/k8sm/internal/controlplane/etcd"
)

func init() { subcommands = append(subcommands, newEtcdCommand) }

func newEtcdCommand() *cobra.Command {
	var c etcd.Config
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Run the embedded etcd 3.6 (state kept in --data-dir across restarts)",
		Long: `Run etcd 3.6, built into km, as the cluster's store. Its data stays in
--data-dir: stop and start km etcd on the same directory and every object is
still there. SIGTERM or SIGINT shut it down cleanly.`,
		Args: cobra.NoArgs,
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
			err := etcd.Run(ctx, c, ready)
			if err == nil {
				log.Printf("km etcd: stopped")
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&c.Name, "name", "km", "member name")
	fs.StringVar(&c.DataDir, "data-dir", "km-etcd", "directory of etcd's data (kept across restarts)")
	fs.StringSliceVar(&c.ClientURLs, "listen-client-urls", []string{"http://127.0.0.1:2379"}, "URLs to serve clients on")
	fs.StringSliceVar(&c.AdvertiseClientURLs, "advertise-client-urls", nil, "client URLs to tell clients (default: --listen-client-urls)")
	fs.StringVar(&c.PeerURL, "listen-peer-urls", "http://127.0.0.1:2380", "URL for peers")
	fs.StringVar(&c.LogLevel, "log-level", "warn", "etcd log level (debug, info, warn, error)")
	return cmd
}
