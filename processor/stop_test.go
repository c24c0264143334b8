package processor

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/eosproc/eosproc/internal/procrun"
	"github.com/eosproc/eosproc/testcontainers"
)

const stopChildEnv = "EOSPROC_TEST_STOP_CHILD"

// TestStopInTransactionHoldsTheNextStepBack checks what PROCESSOR_TEST_STOP_IN_TRANSACTION's tests rely on: once
// the hook has stopped the process, the step after it (there, committing offsets) has not run. A child process
// stops itself again and again and writes a byte right after each stop; whenever all its threads are stopped,
// that byte must not be in the pipe yet.
func TestStopInTransactionHoldsTheNextStepBack(t *testing.T) {
	if os.Getenv(stopChildEnv) != "" {
		stopAndWriteUntilEOF()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStopInTransactionHoldsTheNextStepBack$")
	cmd.Env = append(os.Environ(), stopChildEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	outFD := int(out.(*os.File).Fd())

	const stops = 30
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for k := range stops {
		if _, err := in.Write([]byte{'s'}); err != nil {
			t.Fatalf("stop %d: ask the child to stop: %v", k+1, err)
		}
		err := testcontainers.WaitFor(ctx, "every thread of the child stopped", func(context.Context) (bool, error) {
			return procrun.Stopped(pid), nil
		})
		if err != nil {
			t.Fatalf("stop %d: %v", k+1, err)
		}
		early, err := unix.IoctlGetInt(outFD, unix.TIOCINQ) // bytes waiting in the pipe
		if err != nil {
			t.Fatal(err)
		}
		if early > 0 {
			t.Fatalf("stop %d of %d: the step after the stop ran before the process stopped", k+1, stops)
		}
		if err := cmd.Process.Signal(unix.SIGCONT); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(out, make([]byte, 1)); err != nil {
			t.Fatalf("stop %d: the child did not go on after SIGCONT: %v", k+1, err)
		}
	}
}

// stopAndWriteUntilEOF is the child's side: for every byte read from stdin, stop, then write a byte to stdout.
// Goroutines keep the other threads busy, as the processor's loop and librdkafka's threads would be.
func stopAndWriteUntilEOF() {
	for range runtime.GOMAXPROCS(0) {
		go func() {
			for {
				runtime.Gosched()
			}
		}()
	}
	buf := make([]byte, 1)
	for {
		if _, err := os.Stdin.Read(buf); err != nil {
			os.Exit(0)
		}
		if err := stopThisThread(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if _, err := os.Stdout.Write(buf); err != nil {
			os.Exit(1)
		}
	}
}
