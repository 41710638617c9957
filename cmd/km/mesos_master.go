package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/k8sm/k8sm/internal/mesos/execclient"
	"github.com/k8sm/k8sm/internal/minimesos/master"
)

func init() {
	mesosSubcommands = append(mesosSubcommands, newMesosMasterCommand)
}

// mesosDuration is a flag value that takes Mesos duration strings ("15secs",
// "10mins") as well as Go ones ("15s").
type mesosDuration struct{ d *time.Duration }

func (m mesosDuration) String() string {
	if m.d == nil {
		return ""
	}
	return execclient.FormatDuration(*m.d)
}

func (m mesosDuration) Set(s string) error {
	d, err := execclient.ParseDuration(s)
	if err != nil {
		if gd, gerr := time.ParseDuration(s); gerr == nil {
			*m.d = gd
			return nil
		}
		return fmt.Errorf("%q is not a duration: write e.g. 15secs, 10mins or 500ms", s)
	}
	*m.d = d
	return nil
}

func (m mesosDuration) Type() string { return "duration" }

func newMesosMasterCommand() *cobra.Command {
	cfg := master.Config{}
	var workDir string
	cmd := &cobra.Command{
		Use:   "master",
		Short: "Run a Mesos-compatible master (scheduler API at /api/v1/scheduler)",
		Long: `km mesos master serves the Mesos v1 scheduler HTTP API (JSON and protobuf) as an
Apache Mesos 1.11 master does: DRF offers, filters, task validation, status
updates, reconciliation, framework failover and agent health checks. Its agents
are "km mesos agent" processes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ip := net.ParseIP(cfg.IP); ip == nil || ip.To4() == nil {
				return fmt.Errorf("--ip %q is not an IPv4 address", cfg.IP)
			}
			if cfg.Port <= 0 || cfg.Port > 65535 {
				return fmt.Errorf("--port %d is not a TCP port", cfg.Port)
			}
			if workDir != "" {
				if err := os.MkdirAll(workDir, 0o755); err != nil {
					return fmt.Errorf("--work_dir %s cannot be created: %v", workDir, err)
				}
				cfg.Registry = master.FileRegistry{Path: filepath.Join(workDir, "registry.json")}
			}
			cfg.Logger = log.New(os.Stderr, "km mesos master: ", log.LstdFlags|log.Lmicroseconds)
			m, err := master.New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			addr := net.JoinHostPort(cfg.IP, strconv.Itoa(cfg.Port))
			cfg.Logger.Printf("master %s listening on http://%s (scheduler API /api/v1/scheduler)", m.ID(), addr)
			if err := m.ListenAndServe(ctx, addr); err != nil {
				return fmt.Errorf("%v; choose another port with --port", err)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.IP, "ip", "127.0.0.1", "IP address to listen on and advertise")
	fs.IntVar(&cfg.Port, "port", 5050, "port to listen on")
	fs.StringVar(&cfg.Hostname, "hostname", "localhost", "hostname the master advertises")
	fs.StringVar(&workDir, "work_dir", "", "directory for the master's registry of admitted agents (kept across restarts); empty keeps nothing")
	cfg.AllocationInterval = time.Second
	fs.Var(mesosDuration{&cfg.AllocationInterval}, "allocation_interval", "time between allocation cycles")
	fs.Var(mesosDuration{&cfg.OfferTimeout}, "offer_timeout", "rescind offers held longer than this (0: never, as Mesos' default)")
	cfg.AgentPingTimeout = 15 * time.Second
	fs.Var(mesosDuration{&cfg.AgentPingTimeout}, "agent_ping_timeout", "time between pings to each agent")
	fs.IntVar(&cfg.MaxAgentPingTimeouts, "max_agent_ping_timeouts", 5, "missed pings after which an agent is removed")
	cfg.AgentReregisterTimeout = 10 * time.Minute
	fs.Var(mesosDuration{&cfg.AgentReregisterTimeout}, "agent_reregister_timeout", "after a master restart, time agents have to re-register")
	cfg.HeartbeatInterval = 15 * time.Second
	fs.Var(mesosDuration{&cfg.HeartbeatInterval}, "heartbeat_interval", "time between HEARTBEAT events to schedulers")
	return cmd
}
