package execclient

import (
	"maps"
	"strings"
	"testing"
	"time"
)

func lookup(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func TestConfigFromRecordedEnvironments(t *testing.T) {
	envs := recordedEnvironments(t)
	const (
		fw    = "d9097ce5-55bd-48f9-a8ba-fe84abe1c220-0010"
		agent = "d9097ce5-55bd-48f9-a8ba-fe84abe1c220-S0"
		url   = "http://127.0.0.1:5051/api/v1/executor"
	)
	for id, env := range envs {
		t.Run(id, func(t *testing.T) {
			cfg, err := ConfigFromEnv(lookup(env))
			if err != nil {
				t.Fatal(err)
			}
			want := Config{
				FrameworkID: fw, ExecutorID: id, AgentID: agent, AgentURL: url,
				Directory: env["MESOS_DIRECTORY"], Sandbox: env["MESOS_SANDBOX"],
				RecoveryTimeout: 15 * time.Minute, SubscriptionBackoffMax: 2 * time.Second, ShutdownGracePeriod: 5 * time.Second,
			}
			if cfg != want {
				t.Fatalf("got  %+v\nwant %+v", cfg, want)
			}
			if !strings.HasPrefix(cfg.Sandbox, "/var/lib/mesos/agent/slaves/"+agent+"/frameworks/"+fw+"/executors/"+id+"/runs/") {
				t.Fatalf("sandbox %q", cfg.Sandbox)
			}
		})
	}

	// The same agent with a checkpointing framework adds the two
	// variables of §4.3, with its default flags.
	env := maps.Clone(envs["e-py"])
	env["MESOS_CHECKPOINT"] = "1"
	env["MESOS_RECOVERY_TIMEOUT"] = "15mins"
	env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = "2secs"
	env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"] = "1.5005secs"
	env["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"] = "eyJhbGciOiJIUzI1NiJ9.e30.x"
	cfg, err := ConfigFromEnv(lookup(env))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Checkpoint || cfg.RecoveryTimeout != 15*time.Minute || cfg.SubscriptionBackoffMax != 2*time.Second ||
		cfg.ShutdownGracePeriod != 1500500*time.Microsecond || cfg.AuthToken != "eyJhbGciOiJIUzI1NiJ9.e30.x" {
		t.Fatalf("%+v", cfg)
	}
}

func TestConfigFromEnvFallbacks(t *testing.T) {
	base := map[string]string{"MESOS_FRAMEWORK_ID": "f", "MESOS_EXECUTOR_ID": "e", "MESOS_DIRECTORY": "/d"}
	for name, tc := range map[string]struct {
		set  map[string]string
		want func(Config) bool
	}{
		"agent endpoint from the libprocess PID, as the Mesos library does": {
			map[string]string{"MESOS_SLAVE_PID": "slave(1)@10.1.2.3:5051"},
			func(c Config) bool { return c.AgentURL == "http://10.1.2.3:5051/slave(1)/api/v1/executor" },
		},
		"MESOS_AGENT_ENDPOINT wins over MESOS_SLAVE_PID": {
			map[string]string{"MESOS_AGENT_ENDPOINT": "127.0.1.2:5051", "MESOS_SLAVE_PID": "slave(1)@10.1.2.3:5051"},
			func(c Config) bool { return c.AgentURL == "http://127.0.1.2:5051/api/v1/executor" },
		},
		"IPv6 endpoint": {
			map[string]string{"MESOS_AGENT_ENDPOINT": "[::1]:5051"},
			func(c Config) bool { return c.AgentURL == "http://[::1]:5051/api/v1/executor" },
		},
		"sandbox defaults to the directory; agent ID from MESOS_AGENT_ID": {
			map[string]string{"MESOS_AGENT_ENDPOINT": "h:1", "MESOS_AGENT_ID": "S1"},
			func(c Config) bool { return c.Sandbox == "/d" && c.AgentID == "S1" },
		},
		"checkpoint 0": {
			map[string]string{"MESOS_AGENT_ENDPOINT": "h:1", "MESOS_CHECKPOINT": "0"},
			func(c Config) bool { return !c.Checkpoint },
		},
	} {
		env := maps.Clone(base)
		maps.Copy(env, tc.set)
		cfg, err := ConfigFromEnv(lookup(env))
		if err != nil || !tc.want(cfg) {
			t.Errorf("%s: %+v, %v", name, cfg, err)
		}
	}
}

func TestConfigFromEnvBadValues(t *testing.T) {
	good := recordedEnvironments(t)["e-py"]
	for _, tc := range []struct{ name, value, says string }{
		{"MESOS_FRAMEWORK_ID", "", "is not set"},
		{"MESOS_EXECUTOR_ID", "", "is not set"},
		{"MESOS_EXECUTOR_ID", " e-py", "spaces"},
		{"MESOS_AGENT_ENDPOINT", "", "is not set"},
		{"MESOS_AGENT_ENDPOINT", "http://127.0.0.1:5051/", "not the agent's ip:port"},
		{"MESOS_AGENT_ENDPOINT", "127.0.0.1", "missing port"},
		{"MESOS_AGENT_ENDPOINT", "127.0.0.1:http", "not a number from 1 to 65535"},
		{"MESOS_AGENT_ENDPOINT", "127.0.0.1:0", "not a number from 1 to 65535"},
		{"MESOS_AGENT_ENDPOINT", "127.0.0.1:65536", "not a number from 1 to 65535"},
		{"MESOS_AGENT_ENDPOINT", ":5051", "no host"},
		{"MESOS_AGENT_ENDPOINT", "a b:5051", "not an IP address or host name"},
		{"MESOS_CHECKPOINT", "yes", `neither "1" nor "0"`},
		{"MESOS_CHECKPOINT", "true", `neither "1" nor "0"`},
		{"MESOS_RECOVERY_TIMEOUT", "15 minutes", "not a Mesos duration"},
		{"MESOS_RECOVERY_TIMEOUT", "15m", `unknown unit "m"`},
		{"MESOS_SUBSCRIPTION_BACKOFF_MAX", "-2secs", "never negative"},
		{"MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "5", "the unit is missing"},
		{"MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "99999999weeks", "out of range"},
	} {
		env := maps.Clone(good)
		env[tc.name] = tc.value
		if tc.name == "MESOS_AGENT_ENDPOINT" {
			delete(env, "MESOS_SLAVE_PID") // or it would be used instead
		}
		_, err := ConfigFromEnv(lookup(env))
		if err == nil {
			t.Errorf("%s=%q accepted", tc.name, tc.value)
			continue
		}
		msg := err.Error()
		for _, want := range []string{tc.name, tc.says, "must be started by a Mesos agent"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s=%q: error %q does not say %q", tc.name, tc.value, msg, want)
			}
		}
		if tc.value != "" && !strings.Contains(msg, tc.value) {
			t.Errorf("%s=%q: error %q does not show the value", tc.name, tc.value, msg)
		}
	}

	// The token is a credential: refused without being shown.
	env := maps.Clone(good)
	env["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"] = "secret\r\nX-Evil: 1"
	_, err := ConfigFromEnv(lookup(env))
	if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "MESOS_EXECUTOR_AUTHENTICATION_TOKEN") {
		t.Errorf("bad token: %v", err)
	}
	env = maps.Clone(good)
	delete(env, "MESOS_AGENT_ENDPOINT")
	env["MESOS_SLAVE_PID"] = "127.0.0.1:5051"
	if _, err := ConfigFromEnv(lookup(env)); err == nil || !strings.Contains(err.Error(), "MESOS_SLAVE_PID") {
		t.Errorf("bad PID: %v", err)
	}
}

// FuzzConfigFromEnv: no environment makes ConfigFromEnv panic; every error
// names a MESOS_ variable and the way out; an accepted endpoint makes a URL
// the client takes.
func FuzzConfigFromEnv(f *testing.F) {
	f.Add("d9097ce5-55bd-48f9-a8ba-fe84abe1c220-0010", "e-py", "127.0.0.1:5051", "", "0", "5secs", "", "")
	f.Add("f", "e", "[::1]:5051", "", "1", "5secs", "15mins", "2secs")
	f.Add("f", "e", "", "slave(1)@127.0.0.1:5051", "1", "1.5hrs", "1days", "100ms")
	f.Add("f", "e", "h:65536", "x@y", "yes", "5", "-1secs", "1e3us")
	f.Fuzz(func(t *testing.T, fw, exec, endpoint, pid, checkpoint, grace, recovery, backoff string) {
		env := map[string]string{
			"MESOS_FRAMEWORK_ID": fw, "MESOS_EXECUTOR_ID": exec, "MESOS_AGENT_ENDPOINT": endpoint,
			"MESOS_SLAVE_PID": pid, "MESOS_CHECKPOINT": checkpoint, "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": grace,
			"MESOS_RECOVERY_TIMEOUT": recovery, "MESOS_SUBSCRIPTION_BACKOFF_MAX": backoff,
		}
		cfg, err := ConfigFromEnv(lookup(env))
		if err != nil {
			if !strings.Contains(err.Error(), "MESOS_") || !strings.Contains(err.Error(), "must be started by a Mesos agent") {
				t.Fatalf("error %q names no variable or no way out", err)
			}
			return
		}
		if err := New(cfg).check(); err != nil {
			t.Fatalf("ConfigFromEnv accepted %q / %q but the client refuses its config: %v", endpoint, pid, err)
		}
		if cfg.RecoveryTimeout < 0 || cfg.SubscriptionBackoffMax < 0 || cfg.ShutdownGracePeriod < 0 {
			t.Fatalf("negative duration: %+v", cfg)
		}
	})
}
