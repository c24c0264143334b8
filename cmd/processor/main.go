// Command processor is the exactly-once Kafka-to-Kafka processor binary: it reads its configuration from
// PROCESSOR_* environment variables (`processor -h` lists them), runs until SIGTERM or SIGINT, and exits 0 after
// a clean shutdown, 1 on a runtime error (fenced, broker refused, ...), 2 on invalid configuration.
package main

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

	"github.com/eosproc/eosproc/processor"
)

// Exit codes: what a supervisor or a test can rely on.
const (
	exitOK      = 0
	exitRuntime = 1
	exitConfig  = 2
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	go onSignals(sigs, cancel, func(s os.Signal) {
		fmt.Fprintf(os.Stderr, "second %s during the shutdown: exiting at once; the transaction in flight is aborted by the broker or by the next incarnation\n", s)
		os.Exit(exitRuntime)
	})
	os.Exit(run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// onSignals starts a clean shutdown at the first signal (the batch in flight may still commit) and calls exitNow
// at the second: whoever asks twice wants the process gone now, which is as safe as a SIGKILL.
func onSignals(sigs <-chan os.Signal, shutdown func(), exitNow func(os.Signal)) {
	<-sigs
	shutdown()
	exitNow(<-sigs)
}

// run is main without the process: arguments, environment and outputs in, exit code out.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help", "help":
			processor.PrintUsage(stdout)
			return exitOK
		case "-version", "--version", "version":
			fmt.Fprintln(stdout, processor.BuildOf())
			return exitOK
		default:
			fmt.Fprintf(stderr, "processor takes no arguments but -h and --version (got %q); it is configured by PROCESSOR_* variables, see processor -h\n", a)
			return exitConfig
		}
	}
	cfg, err := processor.LoadConfig(environ)
	if err != nil {
		fmt.Fprintln(stderr, err)
		fmt.Fprintln(stderr, "run `processor -h` for every variable with its default and meaning")
		return exitConfig
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by LoadConfig
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	if cfg.TestCPUProfile != "" {
		stopProfile, err := startCPUProfile(cfg.TestCPUProfile)
		if err != nil {
			fmt.Fprintf(stderr, "PROCESSOR_TEST_CPU_PROFILE: %v\n", err)
			return exitConfig
		}
		defer stopProfile()
	}

	if err := processor.Run(ctx, cfg, nil, log); err != nil {
		var ce *processor.ConfigError
		if errors.As(err, &ce) {
			fmt.Fprintln(stderr, err)
			return exitConfig
		}
		log.Error("processor failed", "error", err.Error())
		return exitRuntime
	}
	return exitOK
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
