package execclient

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/k8sm/k8sm/internal/mesos/codec"
)

// Defaults of the agent flags behind the environment, used when a variable
// is absent (the Mesos executor library refuses to start instead; km is
// lenient because these have only one sensible value).
const (
	// DefaultRecoveryTimeout is the agent's --recovery_timeout.
	DefaultRecoveryTimeout = 15 * time.Minute
	// DefaultSubscriptionBackoffMax is the agent's
	// --executor_reregistration_timeout.
	DefaultSubscriptionBackoffMax = 2 * time.Second
	// DefaultShutdownGracePeriod is the agent's
	// --executor_shutdown_grace_period.
	DefaultShutdownGracePeriod = 5 * time.Second
)

// Config is what an executor needs to talk to its agent. ConfigFromEnv fills
// the Mesos part; the rest are knobs of this client.
type Config struct {
	FrameworkID string // MESOS_FRAMEWORK_ID
	ExecutorID  string // MESOS_EXECUTOR_ID
	AgentID     string // MESOS_SLAVE_ID (or MESOS_AGENT_ID); may be empty
	// AgentURL is http://<MESOS_AGENT_ENDPOINT>/api/v1/executor.
	AgentURL  string
	Directory string // MESOS_DIRECTORY: the sandbox as seen from the host
	Sandbox   string // MESOS_SANDBOX: the sandbox as seen from the executor
	// Checkpoint (MESOS_CHECKPOINT=1): the framework checkpoints, so the
	// executor outlives an agent restart by resubscribing within
	// RecoveryTimeout. Without it a lost connection ends the executor.
	Checkpoint bool
	// RecoveryTimeout (MESOS_RECOVERY_TIMEOUT) is how long after a
	// disconnection the client keeps trying to resubscribe.
	RecoveryTimeout time.Duration
	// SubscriptionBackoffMax (MESOS_SUBSCRIPTION_BACKOFF_MAX) caps the
	// wait between two SUBSCRIBE attempts.
	SubscriptionBackoffMax time.Duration
	// ShutdownGracePeriod (MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD) is how long
	// the executor has to kill its tasks after SHUTDOWN before the agent
	// destroys its container. The client does not use it; the executor does.
	ShutdownGracePeriod time.Duration
	// AuthToken (MESOS_EXECUTOR_AUTHENTICATION_TOKEN) goes out as
	// "Authorization: Bearer <token>" when the agent authenticates
	// executors.
	AuthToken string

	// Encoding of calls and events: codec.JSON (the default) or
	// codec.Protobuf.
	Encoding codec.Encoding
	// HTTPClient sends the calls. It must have no Timeout, which would cut
	// the event stream; the default ignores HTTP_PROXY, because the agent is
	// local and Mesos' own library never uses a proxy.
	HTTPClient *http.Client
	// SubscribeTimeout bounds one SUBSCRIBE attempt until SUBSCRIBED
	// arrives (default 30s).
	SubscribeTimeout time.Duration
	// CallTimeout bounds UPDATE, MESSAGE and HEARTBEAT calls (default 30s).
	CallTimeout time.Duration
	// Clock times the reconnection backoff and the recovery timeout
	// (default: the real clock).
	Clock  Clock
	Logger *log.Logger // default: discard
}

// startedByAgent ends every environment error: the usual cause is running
// the executor by hand.
const startedByAgent = "an executor must be started by a Mesos agent, which sets MESOS_FRAMEWORK_ID, MESOS_EXECUTOR_ID, MESOS_AGENT_ENDPOINT and the other MESOS_ variables"

func envError(name, value, problem string) error {
	if value == "" {
		return fmt.Errorf("%s is not set: %s; %s", name, problem, startedByAgent)
	}
	return fmt.Errorf("%s=%q %s; %s", name, value, problem, startedByAgent)
}

// ConfigFromEnv reads the variables a Mesos agent sets for an executor
// (Mesos' slave.cpp executorEnvironment): getenv is os.Getenv, or a map's
// lookup in tests.
//
// The agent also sets MESOS_EXECUTOR_AUTHENTICATION_TOKEN when it
// authenticates executors; the Mesos library erases it from the process
// environment so that tasks do not inherit it, and a caller passing
// os.Getenv should do the same (os.Unsetenv) before starting tasks.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var c Config
	required := func(name string) (string, error) {
		v := getenv(name)
		if v == "" {
			return "", envError(name, "", "it names this executor to the agent")
		}
		if strings.TrimSpace(v) != v || strings.ContainsAny(v, "\x00\n") {
			return "", envError(name, v, "has surrounding spaces or control characters")
		}
		return v, nil
	}
	var err error
	if c.FrameworkID, err = required("MESOS_FRAMEWORK_ID"); err != nil {
		return Config{}, err
	}
	if c.ExecutorID, err = required("MESOS_EXECUTOR_ID"); err != nil {
		return Config{}, err
	}
	if c.AgentURL, err = agentURL(getenv); err != nil {
		return Config{}, err
	}
	c.AgentID = getenv("MESOS_SLAVE_ID")
	if c.AgentID == "" {
		c.AgentID = getenv("MESOS_AGENT_ID")
	}
	c.Directory = getenv("MESOS_DIRECTORY")
	c.Sandbox = getenv("MESOS_SANDBOX")
	if c.Sandbox == "" {
		c.Sandbox = c.Directory
	}
	// The Mesos library takes anything but "1" as false; a value that is
	// neither is more likely a mistake than a "no".
	switch v := getenv("MESOS_CHECKPOINT"); v {
	case "", "0":
	case "1":
		c.Checkpoint = true
	default:
		return Config{}, envError("MESOS_CHECKPOINT", v, `is neither "1" nor "0"`)
	}
	durations := []struct {
		name string
		into *time.Duration
		def  time.Duration
	}{
		{"MESOS_RECOVERY_TIMEOUT", &c.RecoveryTimeout, DefaultRecoveryTimeout},
		{"MESOS_SUBSCRIPTION_BACKOFF_MAX", &c.SubscriptionBackoffMax, DefaultSubscriptionBackoffMax},
		{"MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", &c.ShutdownGracePeriod, DefaultShutdownGracePeriod},
	}
	for _, d := range durations {
		v := getenv(d.name)
		if v == "" {
			*d.into = d.def
			continue
		}
		parsed, err := ParseDuration(v)
		if err != nil {
			return Config{}, envError(d.name, v, "is not a Mesos duration such as 5secs or 15mins ("+err.Error()+")")
		}
		*d.into = parsed
	}
	c.AuthToken = getenv("MESOS_EXECUTOR_AUTHENTICATION_TOKEN")
	if strings.ContainsAny(c.AuthToken, "\r\n\x00") {
		// Shown without its value: it is a credential.
		return Config{}, fmt.Errorf("MESOS_EXECUTOR_AUTHENTICATION_TOKEN contains a line break or NUL, which cannot go into an HTTP header; %s", startedByAgent)
	}
	return c, nil
}

// agentURL is the executor API endpoint from MESOS_AGENT_ENDPOINT (ip:port),
// or, if an older agent did not set it, from the libprocess PID in
// MESOS_SLAVE_PID (slave(1)@ip:port), which is what the Mesos executor
// library itself uses.
func agentURL(getenv func(string) string) (string, error) {
	if ep := getenv("MESOS_AGENT_ENDPOINT"); ep != "" {
		hostPort, err := checkHostPort(ep)
		if err != nil {
			return "", envError("MESOS_AGENT_ENDPOINT", ep, "is not the agent's ip:port ("+err.Error()+")")
		}
		return "http://" + hostPort + "/api/v1/executor", nil
	}
	pid := getenv("MESOS_SLAVE_PID")
	if pid == "" {
		return "", envError("MESOS_AGENT_ENDPOINT", "", "it is the agent's ip:port, where the executor API is")
	}
	id, addr, ok := strings.Cut(pid, "@")
	if !ok || id == "" || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune("/?#%\\", r) }) {
		return "", envError("MESOS_SLAVE_PID", pid, "is not a libprocess PID such as slave(1)@10.0.0.1:5051 (and MESOS_AGENT_ENDPOINT is not set)")
	}
	hostPort, err := checkHostPort(addr)
	if err != nil {
		return "", envError("MESOS_SLAVE_PID", pid, "is not a libprocess PID such as slave(1)@10.0.0.1:5051 ("+err.Error()+"; and MESOS_AGENT_ENDPOINT is not set)")
	}
	return "http://" + hostPort + "/" + id + "/api/v1/executor", nil
}

func checkHostPort(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", err
	}
	if host == "" {
		return "", fmt.Errorf("no host")
	}
	if net.ParseIP(host) == nil && strings.ContainsFunc(host, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '-' || r == '_')
	}) {
		return "", fmt.Errorf("%q is not an IP address or host name", host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return net.JoinHostPort(host, port), nil
}
