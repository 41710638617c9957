package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/execclient"
	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// The test binary plays three more roles when re-executed:
//
//	<test> mesos command-executor    the command executor (as `km mesos command-executor`)
//	<test> fake-executor             a custom executor, behaving as $FAKE_MODE says
//	<test> run-agent                 an agent in a process of its own ($TEST_AGENT_CONFIG)
func TestMain(m *testing.M) {
	if len(os.Args) >= 3 && os.Args[1] == "mesos" && os.Args[2] == "command-executor" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		err := RunCommandExecutor(ctx, log.New(os.Stderr, "command executor: ", log.Lmicroseconds))
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if len(os.Args) >= 2 && os.Args[1] == "fake-executor" {
		os.Exit(fakeExecutor())
	}
	if len(os.Args) >= 2 && os.Args[1] == "run-agent" {
		os.Exit(runAgentProcess())
	}
	os.Exit(m.Run())
}

func testBinary(t testing.TB) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// fakeExecutorInfo is a custom executor played by the test binary.
func fakeExecutorInfo(t testing.TB, id, mode string) *mesospb.ExecutorInfo {
	bin := testBinary(t)
	return &mesospb.ExecutorInfo{
		Type:       mesospb.ExecutorInfo_CUSTOM.Enum(),
		ExecutorId: &mesospb.ExecutorID{Value: proto.String(id)},
		Name:       proto.String("fake executor " + mode),
		Command: &mesospb.CommandInfo{
			Value: proto.String(bin), Shell: proto.Bool(false), Arguments: []string{bin, "fake-executor"},
			Environment: &mesospb.Environment{Variables: []*mesospb.Environment_Variable{
				{Name: proto.String("FAKE_MODE"), Value: proto.String(mode)},
			}},
		},
	}
}

// fakeExecutor is a custom executor on the executor API (execclient):
// LAUNCH → TASK_RUNNING, KILL → TASK_KILLED, SHUTDOWN → TASK_KILLED for
// its tasks and exit, MESSAGE → echoed to the scheduler. FAKE_MODE:
//
//	normal    as above
//	crash     exits with status 3 once its TASK_RUNNING is acknowledged
//	stubborn  ignores SIGTERM and SHUTDOWN and starts two `sleep 300`, one
//	          in its process group and one in a session of its own
func fakeExecutor() int {
	mode := os.Getenv("FAKE_MODE")
	logger := log.New(os.Stderr, "fake executor: ", log.Lmicroseconds)
	cfg, err := execclient.ConfigFromEnv(os.Getenv)
	if err != nil {
		logger.Print(err)
		return 2
	}
	cfg.Logger = logger
	os.WriteFile(filepath.Join(cfg.Sandbox, "executor.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644)
	if mode == "stubborn" {
		signal.Ignore(syscall.SIGTERM)
		child := exec.Command("sleep", "300")
		child.Start()
		orphan := exec.Command("sleep", "300")
		orphan.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		orphan.Start()
		os.WriteFile(filepath.Join(cfg.Sandbox, "children"), []byte(fmt.Sprintf("%d %d", child.Process.Pid, orphan.Process.Pid)), 0o644)
	}
	c := execclient.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	live := map[string]*mesospb.TaskID{}
	update := func(id *mesospb.TaskID, s mesospb.TaskState) {
		c.Update(ctx, &mesospb.TaskStatus{TaskId: id, State: s.Enum()})
	}
	exitWhenAcked := func(code int) {
		for i := 0; i < 500; i++ {
			if _, ups := c.Unacknowledged(); len(ups) == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		os.Exit(code)
	}
	h := execclient.HandlerFuncs{OnEvent: func(ctx context.Context, ev *executorpb.Event) {
		switch ev.GetType() {
		case executorpb.Event_LAUNCH, executorpb.Event_LAUNCH_GROUP:
			tasks := []*mesospb.TaskInfo{ev.GetLaunch().GetTask()}
			if ev.GetType() == executorpb.Event_LAUNCH_GROUP {
				tasks = ev.GetLaunchGroup().GetTaskGroup().GetTasks()
			}
			for _, t := range tasks {
				mu.Lock()
				live[t.GetTaskId().GetValue()] = t.TaskId
				mu.Unlock()
				update(t.TaskId, mesospb.TaskState_TASK_RUNNING)
			}
			if mode == "crash" {
				go exitWhenAcked(3)
			}
		case executorpb.Event_KILL:
			mu.Lock()
			delete(live, ev.GetKill().GetTaskId().GetValue())
			mu.Unlock()
			update(ev.GetKill().TaskId, mesospb.TaskState_TASK_KILLED)
		case executorpb.Event_MESSAGE:
			c.Message(ctx, append([]byte("echo: "), ev.GetMessage().GetData()...))
		case executorpb.Event_SHUTDOWN:
			if mode == "stubborn" {
				return
			}
			mu.Lock()
			for _, id := range live {
				update(id, mesospb.TaskState_TASK_KILLED)
			}
			mu.Unlock()
			go exitWhenAcked(0)
		}
	}}
	if err := c.Run(ctx, h); err != nil {
		logger.Print(err)
		if mode == "stubborn" {
			select {}
		}
		return 1
	}
	return 0
}

// runAgentProcess runs an agent as this whole process, so that a test can
// kill it with SIGKILL.
func runAgentProcess() int {
	var cfg Config
	if err := json.Unmarshal([]byte(os.Getenv("TEST_AGENT_CONFIG")), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg.Logger = log.New(os.Stderr, "agent process: ", log.Lmicroseconds)
	a, err := New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := a.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func testLogger(t testing.TB, prefix string) *log.Logger {
	if testing.Verbose() {
		return log.New(os.Stderr, prefix+": ", log.Lmicroseconds)
	}
	return log.New(io.Discard, "", 0)
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
