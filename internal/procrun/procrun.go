// Package procrun runs the real processor binary as a child process for end-to-end tests, the demo and
// benchmarks: it builds the binary once, starts instances with their environment, signals them (SIGKILL,
// SIGTERM, SIGSTOP, SIGCONT), keeps each instance's log in a file and reads its metrics.
package procrun

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/eosproc/eosproc/testcontainers"
)

// Build compiles ./cmd/processor of the module that holds the working directory into dir and returns its path.
func Build(ctx context.Context, dir string) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("build processor: find module root: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bin := filepath.Join(dir, "processor")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/processor")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build processor: %w\n%s", err, out)
	}
	return bin, nil
}

// Instance is one running processor.
type Instance struct {
	Name     string
	HTTPAddr string // 127.0.0.1:port of /metrics, /healthz, /readyz
	LogPath  string

	cmd    *exec.Cmd
	logf   *os.File
	done   chan struct{}
	mu     sync.Mutex
	exit   error
	exited bool
}

// Start runs bin with env added to the current environment (PROCESSOR_HTTP_ADDR is set to a free loopback
// port unless env sets it). Its stdout and stderr are appended to logPath.
func Start(bin, name, logPath string, env map[string]string) (*Instance, error) {
	return StartCommand([]string{bin}, name, logPath, env)
}

// StartCommand is Start for any command line (args[0] the program), e.g. a peer the benchmark compares with.
func StartCommand(args []string, name, logPath string, env map[string]string) (*Instance, error) {
	in := &Instance{Name: name, LogPath: logPath, done: make(chan struct{})}
	in.HTTPAddr = env["PROCESSOR_HTTP_ADDR"]
	if in.HTTPAddr == "" {
		port, err := testcontainers.FreeLoopbackPort()
		if err != nil {
			return nil, fmt.Errorf("start %s: choose HTTP port: %w", name, err)
		}
		in.HTTPAddr = "127.0.0.1:" + strconv.Itoa(port)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", name, err)
	}
	in.logf = logf
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "PROCESSOR_HTTP_ADDR="+in.HTTPAddr)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, args[0], err)
	}
	in.cmd = cmd
	go func() {
		err := cmd.Wait()
		in.mu.Lock()
		in.exit, in.exited = err, true
		in.mu.Unlock()
		logf.Close()
		close(in.done)
	}()
	return in, nil
}

// PID is the process id.
func (in *Instance) PID() int { return in.cmd.Process.Pid }

// Stopped reports whether every thread of the process is stopped (e.g. it stopped itself with
// PROCESSOR_TEST_STOP_IN_TRANSACTION).
func (in *Instance) Stopped() bool { return Stopped(in.PID()) }

// Stopped reports whether every thread of process pid is stopped (state T in /proc): only then has nothing more
// run since the stop. The main thread's state alone says less, since the threads of a process stop one by one.
func Stopped(pid int) bool {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(stats) == 0 {
		return false
	}
	for _, path := range stats {
		stat, err := os.ReadFile(path)
		if err != nil {
			return false // a thread that has just exited: the process is not stopped
		}
		// The command name, in parentheses, may hold spaces; the state follows its closing parenthesis.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 || i+2 >= len(stat) || stat[i+2] != 'T' {
			return false
		}
	}
	return true
}

// Signal sends sig to the process.
func (in *Instance) Signal(sig syscall.Signal) error {
	if err := in.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s to %s: %w", sig, in.Name, err)
	}
	return nil
}

// Kill sends SIGKILL and waits for the process to be gone.
func (in *Instance) Kill() error {
	if err := in.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-in.done
	return nil
}

// Stop sends SIGTERM and waits up to timeout for a clean exit; it returns the exit code.
func (in *Instance) Stop(timeout time.Duration) (int, error) {
	if err := in.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return -1, err
	}
	select {
	case <-in.done:
		return in.ExitCode(), nil
	case <-time.After(timeout):
		// SIGQUIT makes a Go program write every goroutine's stack to its log: where it was stuck.
		_ = in.Signal(syscall.SIGQUIT)
		select {
		case <-in.done:
		case <-time.After(5 * time.Second):
			_ = in.Kill()
		}
		return -1, fmt.Errorf("stop %s: still running %s after SIGTERM; stacks dumped to %s (SIGQUIT), then killed", in.Name, timeout, in.LogPath)
	}
}

// Done is closed when the process has exited.
func (in *Instance) Done() <-chan struct{} { return in.done }

// ExitCode is the process's exit code once it exited (-1 when killed by a signal or still running).
func (in *Instance) ExitCode() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.exited {
		return -1
	}
	return in.cmd.ProcessState.ExitCode()
}

// Log returns what the process wrote so far.
func (in *Instance) Log() string {
	b, _ := os.ReadFile(in.LogPath)
	return string(b)
}

// Metric returns the sum over all label sets of the Prometheus metric name from /metrics.
func (in *Instance) Metric(ctx context.Context, name string) (float64, error) {
	text, err := in.Metrics(ctx)
	if err != nil {
		return 0, err
	}
	return SumMetric(strings.NewReader(text), name)
}

// Metrics returns what /metrics serves, in Prometheus's text format.
func (in *Instance) Metrics(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+in.HTTPAddr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("metrics of %s: %w", in.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("metrics of %s: %w", in.Name, err)
	}
	return string(body), nil
}

// SumMetric adds the samples of metric name in a Prometheus text exposition.
func SumMetric(r io.Reader, name string) (float64, error) {
	var sum float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue // another metric whose name starts with this one
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: parse %q: %w", name, line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

// Ready reports whether /readyz answers 200.
func (in *Instance) Ready(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+in.HTTPAddr+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
