package processor

import (
	"bytes"
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestHelpPrintsEveryVariableAndExitsZero(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := mainRun(context.Background(), []string{"-h"}, nil, &out, &errOut, nil); code != ExitOK {
		t.Fatalf("exit code %d, want %d", code, ExitOK)
	}
	for _, v := range []string{"PROCESSOR_BROKERS", "PROCESSOR_BATCH_INTERVAL", "500ms", "PROCESSOR_TEST_FAIL_HEADER"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("help lacks %q", v)
		}
	}
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
	if code := mainRun(context.Background(), []string{"--version"}, nil, &out, &errOut, nil); code != ExitOK {
		t.Fatalf("exit code %d, want %d", code, ExitOK)
	}
	for _, want := range []string{"eosproc processor", "commit", "go1.", "librdkafka 2."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--version printed %q, want it to contain %q", out.String(), want)
		}
	}
}
