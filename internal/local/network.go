package local

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Network decides where the agents live. The apiserver refuses loopback
// addresses in Endpoints and EndpointSlices, so agents on 127.0.1.N
// cannot back a service; in network namespaces each agent has an address
// of its own on a bridge, the way agents on separate machines would, and
// km's HostIP:HostPort endpoints work.
type Network interface {
	// HostIP is where the control plane and the master listen, reachable
	// from the agents.
	HostIP() string
	// AgentIP is the address of agent i (1-based).
	AgentIP(i int) string
	// Command wraps the argv of agent i so that it runs where the agent lives.
	Command(i int, argv []string) []string
	// Setup makes the network for n agents; Teardown removes it.
	Setup(n int) error
	Teardown()
	Describe(n int) string
	// Processes lists what still runs where the n agents live (nil when
	// that cannot be told apart from the rest of the machine).
	Processes(n int) []int
}

// Loopback puts agent i on 127.0.1.i: no privileges needed, but services
// get no endpoints (the apiserver refuses loopback endpoint addresses).
type Loopback struct{}

func (Loopback) HostIP() string                        { return "127.0.0.1" }
func (Loopback) AgentIP(i int) string                  { return fmt.Sprintf("127.0.1.%d", i) }
func (Loopback) Command(_ int, argv []string) []string { return argv }
func (Loopback) Setup(int) error                       { return nil }
func (Loopback) Teardown()                             {}
func (Loopback) Processes(int) []int                   { return nil }
func (Loopback) Describe(n int) string {
	return fmt.Sprintf("agent-1..agent-%d on 127.0.1.1..127.0.1.%d (loopback)", n, n)
}

// Netns puts agent i in the network namespace km-agent-i, joined to the
// bridge km0 by a veth pair. The addresses come from 198.18.0.0/24, a
// range reserved for network tests (RFC 2544), so they collide with no
// real network: the bridge is 198.18.0.1, agent i is 198.18.0.(i+1).
type Netns struct {
	// IP runs the ip(8) command; tests may replace it.
	IP func(args ...string) error
	// LockPath guards the bridge and namespaces, which are the machine's
	// and not the data dir's: one km local with namespaces at a time.
	LockPath string
	n        int
	lock     *os.File
}

const (
	bridgeName = "km0"
	netnsCIDR  = "198.18.0.0/24"
	maxAgents  = 250
)

func (*Netns) HostIP() string       { return "198.18.0.1" }
func (*Netns) AgentIP(i int) string { return fmt.Sprintf("198.18.0.%d", i+1) }
func netnsName(i int) string        { return fmt.Sprintf("km-agent-%d", i) }
func vethName(i int) string         { return fmt.Sprintf("km-veth%d", i) }
func (*Netns) Describe(n int) string {
	return fmt.Sprintf("agent-1..agent-%d on 198.18.0.2..198.18.0.%d (network namespaces km-agent-N, bridge %s)", n, n+1, bridgeName)
}

func (ns *Netns) Command(i int, argv []string) []string {
	return append([]string{"ip", "netns", "exec", netnsName(i)}, argv...)
}

func (ns *Netns) ip(args ...string) error {
	if ns.IP != nil {
		return ns.IP(args...)
	}
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Setup makes the bridge and one namespace per agent. Leftovers of an
// earlier km local that was killed are removed first, so Setup can always
// be run again.
func (ns *Netns) Setup(n int) error {
	if ns.LockPath == "" {
		ns.LockPath = "/run/km-local-network.pid"
	}
	lock, err := lockFile(ns.LockPath, "the agents' network (bridge "+bridgeName+", namespaces km-agent-N)")
	if err != nil {
		return err
	}
	ns.lock = lock
	if err := checkSubnetFree(); err != nil {
		ns.unlock()
		return err
	}
	ns.removeAll(n)
	ns.n = n
	steps := [][]string{
		{"link", "add", bridgeName, "type", "bridge"},
		{"addr", "add", ns.HostIP() + "/24", "dev", bridgeName},
		{"link", "set", bridgeName, "up"},
	}
	for i := 1; i <= n; i++ {
		name, veth := netnsName(i), vethName(i)
		steps = append(steps,
			[]string{"netns", "add", name},
			[]string{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name},
			[]string{"link", "set", veth, "master", bridgeName, "up"},
			[]string{"-n", name, "addr", "add", ns.AgentIP(i) + "/24", "dev", "eth0"},
			[]string{"-n", name, "link", "set", "eth0", "up"},
			[]string{"-n", name, "link", "set", "lo", "up"},
			[]string{"-n", name, "route", "add", "default", "via", ns.HostIP()},
		)
	}
	for _, s := range steps {
		if err := ns.ip(s...); err != nil {
			ns.removeAll(n)
			ns.unlock()
			return fmt.Errorf("making the agents' network: %v; run km local as root, or use --agent-network=loopback (services then get no endpoints)", err)
		}
	}
	return nil
}

// checkSubnetFree refuses to take 198.18.0.0/24 over from an interface
// that is not km's.
func checkSubnetFree() error {
	_, subnet, _ := net.ParseCIDR(netnsCIDR)
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	for _, ifc := range ifaces {
		if ifc.Name == bridgeName {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && subnet.Contains(ipn.IP) {
				return fmt.Errorf("%s already has %s, inside %s which km local uses for its agents; remove that address or use --agent-network=loopback", ifc.Name, ipn, netnsCIDR)
			}
		}
	}
	return nil
}

func (ns *Netns) removeAll(n int) {
	// Namespaces of more agents than this run needs may be left from an
	// earlier run with a larger --agents: remove every km-agent-N there is.
	if entries, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "km-agent-") {
				ns.ip("netns", "del", e.Name())
			}
		}
	}
	for i := 1; i <= n; i++ {
		ns.ip("netns", "del", netnsName(i))
	}
	if _, err := net.InterfaceByName(bridgeName); err == nil {
		ns.ip("link", "del", bridgeName)
	}
}

// Processes lists the processes of the agents' namespaces (ip netns pids).
func (ns *Netns) Processes(n int) []int {
	var pids []int
	for i := 1; i <= n; i++ {
		out, err := exec.Command("ip", "netns", "pids", netnsName(i)).Output()
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func (ns *Netns) Teardown() {
	if ns.lock != nil {
		ns.removeAll(ns.n)
		ns.unlock()
	}
}

func (ns *Netns) unlock() {
	ns.lock.Close()
	ns.lock = nil
}

// ChooseNetwork maps --agent-network to a Network: "netns" needs root
// and ip(8); "auto" takes netns when it can and says why when it cannot.
func ChooseNetwork(mode string) (Network, string, error) {
	switch mode {
	case "loopback":
		return Loopback{}, "", nil
	case "netns":
		if err := canNetns(); err != nil {
			return nil, "", fmt.Errorf("--agent-network=netns: %v", err)
		}
		return &Netns{}, "", nil
	case "auto", "":
		if err := canNetns(); err != nil {
			return Loopback{}, fmt.Sprintf("agents on loopback addresses because %v: services will get no endpoints (the apiserver refuses loopback endpoint addresses); run km local as root for network namespaces", err), nil
		}
		return &Netns{}, "", nil
	}
	return nil, "", fmt.Errorf("--agent-network=%q: use auto, netns or loopback", mode)
}

func canNetns() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("km local is not running as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("the ip command (iproute2) is not installed")
	}
	return nil
}
