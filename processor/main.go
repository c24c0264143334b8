package processor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/eosproc/eosproc/stream"
)

// Exit codes of Main: what a supervisor or a test can rely on.
const (
	ExitOK      = 0 // a clean stop after SIGTERM or SIGINT, or -h and --version
	ExitRuntime = 1 // a runtime error: fenced, brokers refusing, a record that cannot be written
	ExitConfig  = 2 // invalid configuration, reported at start naming the variables
)

// Main is the main function of a processor binary with transform (nil: the configured stages, or a copy): it reads
// PROCESSOR_* variables (`-h` lists them, `--version` prints the build), logs JSON on stderr, runs until SIGTERM
// or SIGINT, and exits with ExitOK after a clean shutdown, ExitRuntime on a runtime error, ExitConfig on invalid
// configuration. A second signal during the shutdown exits at once. In a container with a memory limit and
// without GOMEMLIMIT, the Go heap's soft limit is set to 3/4 of the container's limit.
func Main(transform stream.Transform) {
	limitHeapToContainer()
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	go onSignals(sigs, cancel, func(s os.Signal) {
		fmt.Fprintf(os.Stderr, "second %s during the shutdown: exiting at once; the transaction in flight is aborted by the broker or by the next incarnation\n", s)
		os.Exit(ExitRuntime)
	})
	os.Exit(mainRun(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr, transform))
}

// onSignals starts a clean shutdown at the first signal (the batch in flight may still commit) and calls exitNow
// at the second: whoever asks twice wants the process gone now, which is as safe as a SIGKILL.
func onSignals(sigs <-chan os.Signal, shutdown func(), exitNow func(os.Signal)) {
	<-sigs
	shutdown()
	exitNow(<-sigs)
}

// mainRun is Main without the process: arguments, environment and outputs in, exit code out.
func mainRun(ctx context.Context, args, environ []string, stdout, stderr io.Writer, transform stream.Transform) int {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help", "help":
			PrintUsage(stdout)
			return ExitOK
		case "-version", "--version", "version":
			fmt.Fprintln(stdout, BuildOf())
			return ExitOK
		default:
			fmt.Fprintf(stderr, "processor takes no arguments but -h and --version (got %q); it is configured by PROCESSOR_* variables, see processor -h\n", a)
			return ExitConfig
		}
	}
	cfg, err := LoadConfig(environ)
	if err != nil {
		fmt.Fprintln(stderr, err)
		fmt.Fprintln(stderr, "run `processor -h` for every variable with its default and meaning")
		return ExitConfig
	}
	level, _ := parseLevel(cfg.LogLevel) // validated by LoadConfig
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	if cfg.TestCPUProfile != "" {
		stopProfile, err := startCPUProfile(cfg.TestCPUProfile)
		if err != nil {
			fmt.Fprintf(stderr, "PROCESSOR_TEST_CPU_PROFILE: %v\n", err)
			return ExitConfig
		}
		defer stopProfile()
	}
	if err := (&Processor{Config: cfg, Transform: transform, Logger: log}).Run(ctx); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			fmt.Fprintln(stderr, err)
			return ExitConfig
		}
		log.Error("processor failed", "error", err.Error())
		return ExitRuntime
	}
	return ExitOK
}

// startCPUProfile profiles the process until the returned function is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
