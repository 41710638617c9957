// Package etcd runs an embedded etcd 3.6 server with its data kept in a
// directory, so the cluster's state survives restarts.
package etcd

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Config of the embedded etcd.
type Config struct {
	Name       string
	DataDir    string
	ClientURLs []string // listen and advertise, e.g. http://127.0.0.1:2379
	PeerURL    string   // e.g. http://127.0.0.1:2380
	LogLevel   string
}

func parseURLs(flag string, s []string) ([]url.URL, error) {
	var out []url.URL
	for _, v := range s {
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("%s: %q is not a URL like http://127.0.0.1:2379", flag, v)
		}
		out = append(out, *u)
	}
	return out, nil
}

// CheckFree fails at once, naming the flag, when a URL's port is taken.
func CheckFree(flag string, urls []url.URL) error {
	for _, u := range urls {
		ln, err := net.Listen("tcp", u.Host)
		if err != nil {
			return fmt.Errorf("port %s of %s is already in use (another etcd?); choose another with %s", u.Port(), u.Host, flag)
		}
		ln.Close()
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
	if err := CheckFree("--listen-client-urls", clientURLs); err != nil {
		return err
	}
	if err := CheckFree("--listen-peer-urls", peer); err != nil {
		return err
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir %s cannot be created: %v", c.DataDir, err)
	}
	cfg := embed.NewConfig()
	cfg.Name = c.Name
	cfg.Dir = c.DataDir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = clientURLs, clientURLs
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
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
		if ready != nil {
			close(ready)
		}
	case <-time.After(2 * time.Minute):
		e.Server.Stop()
		return fmt.Errorf("etcd did not become ready within 2 minutes (is %s intact?)", c.DataDir)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-e.Err():
		return err
	}
}
