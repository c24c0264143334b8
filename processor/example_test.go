package processor_test

import (
	"bytes"
	"context"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/eosproc/eosproc/processor"
	"github.com/eosproc/eosproc/stream"
)

// A program with its own transform: the configuration comes from the same PROCESSOR_* variables as the binary's
// (or set the Config's fields in Go), and Run gives it the same exactly-once loop, dead-letter topic, metrics and
// health endpoints. examples/explode is a complete one.
func ExampleRun() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := processor.LoadConfig(os.Environ())
	if err != nil {
		log.Fatal(err)
	}
	upper := func(ctx context.Context, in stream.Record) ([]stream.Record, error) {
		out, err := stream.Identity(ctx, in) // keeps key, headers and timestamp, adds the source header
		if err != nil {
			return nil, err
		}
		out[0].Value = bytes.ToUpper(in.Value)
		return out, nil
	}
	if err := processor.Run(ctx, cfg, upper, nil); err != nil {
		log.Fatal(err)
	}
}
