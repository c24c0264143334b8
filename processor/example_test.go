package processor_test

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eosproc/eosproc/processor"
	"github.com/eosproc/eosproc/stream"
)

// A binary with its own transform: Main gives it everything the processor binary has (PROCESSOR_* variables,
// JSON logs, signals, exit codes, metrics and health endpoints). examples/explode is a complete one.
func ExampleMain() {
	upper := func(ctx context.Context, in stream.Record) ([]stream.Record, error) {
		out, err := stream.Identity(ctx, in) // keeps key, headers and timestamp, adds the source header
		if err != nil {
			return nil, err
		}
		out[0].Value = bytes.ToUpper(in.Value)
		return out, nil
	}
	processor.Main(upper)
}

// A Processor configured in Go inside a larger program: only the three required fields are set, every other one
// takes the binary's default. The program keeps its own logger and metrics registry and serves no HTTP of the
// processor's.
func ExampleProcessor() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	reg := prometheus.NewRegistry()
	p := &processor.Processor{
		Config: processor.Config{Brokers: "localhost:9092", InputTopics: []string{"orders"}, OutputTopic: "orders-copy"},
		Logger: slog.Default(), Metrics: reg, NoHTTP: true,
	}
	if err := p.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
