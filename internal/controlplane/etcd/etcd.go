// Package etcd runs an embedded etcd 3.6 server with its data kept in a
// directory, so the cluster's state survives restarts.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Config of the embedded etcd.
type Config struct {
	Name    string
	DataDir string
	// ClientURLs are listened on, e.g. http://127.0.0.1:2379;
	// AdvertiseClientURLs (default: ClientURLs) are what etcd tells
	// clients.
	ClientURLs          []string
	AdvertiseClientURLs []string
	PeerURL             string // e.g. http://127.0.0.1:2380
	LogLevel            string
}

func parseURLs(flag string, s []string) ([]url.URL, error) {
	var out []url.URL
	for _, v := range s {
		u, err := url.Parse(v)
		if err != nil || u.Host == "" || u.Port() == "" {
			return nil, fmt.Errorf("%s: %q is not a URL like http://127.0.0.1:2379", flag, v)
		}
		out = append(out, *u)
	}
	return out, nil
}

// CheckFree fails at once, naming the port and the flag, when a URL's
// port cannot be listened on.
func CheckFree(flag string, urls []url.URL) error {
	for _, u := range urls {
		ln, err := net.Listen("tcp", u.Host)
		if err == nil {
			ln.Close()
			continue
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("km etcd: port %s on %s is already in use (another etcd?); choose another with %s", u.Port(), u.Hostname(), flag)
		}
		return fmt.Errorf("km etcd: cannot listen on %s (%v); choose another address with %s", u.Host, err, flag)
	}
	return nil
}

// Run starts etcd and serves until ctx ends, then shuts it down cleanly.
// ready is closed once etcd serves clients.
func Run(ctx context.Context, c Config, ready chan<- struct{}) error {
	clientURLs, err := parseURLs("--listen-client-urls", c.ClientURLs)
	if err != nil {
		return err
	}
	peer, err := parseURLs("--listen-peer-urls", []string{c.PeerURL})
	if err != nil {
		return err
	}
	advertise := clientURLs
	if len(c.AdvertiseClientURLs) > 0 {
		if advertise, err = parseURLs("--advertise-client-urls", c.AdvertiseClientURLs); err != nil {
			return err
		}
	}
	if err := CheckFree("--listen-client-urls", clientURLs); err != nil {
		return err
	}
	if err := CheckFree("--listen-peer-urls", peer); err != nil {
		return err
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("km etcd: --data-dir %s cannot be created: %v", c.DataDir, err)
	}
	cfg := embed.NewConfig()
	cfg.Name = c.Name
	cfg.Dir = c.DataDir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = clientURLs, advertise
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = peer, peer
	cfg.InitialCluster = c.Name + "=" + peer[0].String()
	cfg.LogLevel = c.LogLevel
	if cfg.LogLevel == "" {
		cfg.LogLevel = "warn"
	}
	// etcd 3.6's NewConfig leaves this at 0, which logs every request.
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("km etcd: starting etcd on %s: %w", c.DataDir, err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
		if ready != nil {
			close(ready)
		}
	case <-ctx.Done():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("km etcd: %w", err)
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("km etcd: not ready within 2 minutes (is the data in %s intact?)", c.DataDir)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("km etcd: %w", err)
	}
}
