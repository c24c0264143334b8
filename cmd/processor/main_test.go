package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/eosproc/eosproc/internal/procrun"
)

func TestHelpPrintsEveryVariableAndExitsZero(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, nil, &out, &errOut); code != exitOK {
		t.Fatalf("exit code %d, want %d", code, exitOK)
	}
	for _, v := range []string{"PROCESSOR_BROKERS", "PROCESSOR_BATCH_INTERVAL", "500ms", "PROCESSOR_TEST_FAIL_HEADER"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("help lacks %q", v)
		}
	}
}

func TestBadConfigExitsTwoNamingTheVariable(t *testing.T) {
	var out, errOut bytes.Buffer
	env := []string{"PROCESSOR_BROKERS=localhost:9092", "PROCESSOR_INPUT_TOPICS=in", "PROCESSOR_OUTPUT_TOPIC=out", "PROCESSOR_BATCH_INTERVAL=abc"}
	if code := run(context.Background(), nil, env, &out, &errOut); code != exitConfig {
		t.Fatalf("exit code %d, want %d", code, exitConfig)
	}
	if want := `PROCESSOR_BATCH_INTERVAL="abc": not a duration (e.g. 500ms`; !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr %q lacks %q", errOut.String(), want)
	}
}

func TestUnexpectedArgumentExitsTwo(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--brokers=x"}, nil, &out, &errOut); code != exitConfig {
		t.Fatalf("exit code %d, want %d", code, exitConfig)
	}
}

// TestBinaryExitCodes runs the built binary, as a supervisor would.
func TestBinaryExitCodes(t *testing.T) {
	bin, err := procrun.Build(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		env  []string
		code int
	}{
		{[]string{"-h"}, nil, exitOK},
		{[]string{"--version"}, nil, exitOK},
		{nil, nil, exitConfig},
		{nil, []string{"PROCESSOR_BROKERS=x", "PROCESSOR_INPUT_TOPICS=in", "PROCESSOR_OUTPUT_TOPIC=in"}, exitConfig},
	} {
		cmd := exec.Command(bin, tt.args...)
		cmd.Env = append(withoutProcessorVars(os.Environ()), tt.env...)
		_ = cmd.Run()
		if got := cmd.ProcessState.ExitCode(); got != tt.code {
			t.Errorf("processor %v with %v: exit code %d, want %d", tt.args, tt.env, got, tt.code)
		}
	}
}

func withoutProcessorVars(environ []string) []string {
	var out []string
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "PROCESSOR_") {
			out = append(out, kv)
		}
	}
	return out
}

func TestFirstSignalShutsDownAndSecondExitsAtOnce(t *testing.T) {
	sigs := make(chan os.Signal)
	shutdown := make(chan struct{})
	exited := make(chan os.Signal, 1)
	go onSignals(sigs, func() { close(shutdown) }, func(s os.Signal) { exited <- s })

	sigs <- syscall.SIGTERM
	<-shutdown // a second close would panic: shutdown is asked once
	select {
	case s := <-exited:
		t.Fatalf("exited at the first signal (%v), want a clean shutdown first", s)
	default:
	}
	sigs <- os.Interrupt
	if s := <-exited; s != os.Interrupt {
		t.Errorf("exited on %v, want the second signal", s)
	}
}

func TestVersionNamesTheBuild(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--version"}, nil, &out, &errOut); code != exitOK {
		t.Fatalf("exit code %d, want %d", code, exitOK)
	}
	for _, want := range []string{"eosproc processor", "commit", "go1.", "librdkafka 2."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--version printed %q, want it to contain %q", out.String(), want)
		}
	}
}
