// Command demo runs the main job end to end on a real Kafka: a single broker through the testcontainers harness,
// a generator writing 200,000 records, the real processor binary copying them while the demo SIGKILLs and
// restarts it twice, a live progress line, and at the end a read_committed verifier's verdict.
//
// `make demo` runs it after `make setup`. It exits 0 only when the verdict is exactly once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eosproc/eosproc/internal/kafkatest"
	"github.com/eosproc/eosproc/internal/procrun"
	"github.com/eosproc/eosproc/internal/verify"
	"github.com/eosproc/eosproc/testcontainers"
	tclog "github.com/testcontainers/testcontainers-go/log"
)

const (
	inputTopic  = "demo-in"
	outputTopic = "demo-out"
	deadLetters = "demo-dlq"
	group       = "demo"
	partitions  = 6
)

func main() {
	records := flag.Int("records", 200_000, "records the generator writes")
	kills := flag.Int("kills", 2, "times the processor is SIGKILLed and restarted")
	flag.Parse()
	tclog.SetDefault(tclog.NewNoopLogger()) // the demo says what it does itself
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *records, *kills); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// startCluster starts a single-broker Kafka with the demo's topics.
func startCluster(ctx context.Context) (*testcontainers.Cluster, error) {
	step("starting a single-broker Kafka (%s)", testcontainers.Image())
	started := time.Now()
	cluster, err := testcontainers.Start(ctx, testcontainers.Options{})
	if err != nil {
		return nil, err
	}
	step("Kafka ready at %s in %s", cluster.BootstrapServers(), since(started))
	for topic, n := range map[string]int{inputTopic: partitions, outputTopic: partitions, deadLetters: 1} {
		if err := cluster.CreateTopic(ctx, topic, n, 1, nil); err != nil {
			_ = cluster.Terminate(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	step("topics %s (%d partitions), %s (%d partitions), %s", inputTopic, partitions, outputTopic, partitions, deadLetters)
	return cluster, nil
}

// processorEnv is the demo processor's configuration.
func processorEnv(brokers string) map[string]string {
	return map[string]string{
		"PROCESSOR_BROKERS":           brokers,
		"PROCESSOR_INPUT_TOPICS":      inputTopic,
		"PROCESSOR_OUTPUT_TOPIC":      outputTopic,
		"PROCESSOR_DEAD_LETTER_TOPIC": deadLetters,
		"PROCESSOR_APP_ID":            "demo",
		"PROCESSOR_GROUP_ID":          group,
		"PROCESSOR_INSTANCE_ID":       "demo-0",
		"PROCESSOR_HTTP_ADDR":         "127.0.0.1:9464",
		// One replica killed and restarted in place: as a static member it gets its partitions back at once,
		// instead of after its dead predecessor's session times out (45 s by default).
		"PROCESSOR_STATIC_MEMBERSHIP": "true",
	}
}

func run(ctx context.Context, records, kills int) error {
	cluster, err := startCluster(ctx)
	if err != nil {
		return err
	}
	defer cluster.Terminate(context.WithoutCancel(ctx))

	workDir, err := os.MkdirTemp("", "eosproc-demo-")
	if err != nil {
		return err
	}
	step("building the processor binary")
	bin, err := procrun.Build(ctx, workDir)
	if err != nil {
		return err
	}
	logPath := filepath.Join(workDir, "processor.log")
	env := processorEnv(cluster.BootstrapServers())
	startProcessor := func() (*procrun.Instance, error) { return procrun.Start(bin, "demo-0", logPath, env) }

	// The generator writes while the processor runs, as a live upstream would.
	var generated atomic.Int64
	genErr := make(chan error, 1)
	go func() { genErr <- generate(ctx, cluster.BootstrapServers(), records, &generated) }()

	proc, err := startProcessor()
	if err != nil {
		return err
	}
	step("processor started (pid %d), metrics at http://%s/metrics, log %s", proc.PID(), proc.HTTPAddr, logPath)

	progress := newProgress(records)
	killed, genDone := 0, false
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	runStart := time.Now()
	for {
		select {
		case <-ctx.Done():
			_ = proc.Kill()
			return ctx.Err()
		case err := <-genErr:
			if err != nil {
				_ = proc.Kill()
				return fmt.Errorf("generator: %w", err)
			}
			genDone = true
			genErr = nil
		case <-proc.Done():
			return fmt.Errorf("processor exited on its own with code %d; its log: %s\n%s", proc.ExitCode(), logPath, proc.Log())
		case <-ticker.C:
			lag, err := kafkatest.Lag(ctx, cluster.BootstrapServers(), group, []string{inputTopic})
			if err != nil {
				continue // the broker is busy or the group not formed yet: try again at the next tick
			}
			written := generated.Load()
			out := written - lag
			progress.print(written, out, lag)
			// Kill once at each third of the run, whatever moment of the batch that falls on.
			if killed < kills && out >= int64(records*(killed+1)/(kills+1)) {
				if err := proc.Kill(); err != nil {
					return err
				}
				killed++
				progress.note("SIGKILL %d of %d: processor killed at %d records out; restarting", killed, kills, out)
				if proc, err = startProcessor(); err != nil {
					return err
				}
			}
			if genDone && lag == 0 {
				progress.done()
				step("all %d records processed in %s with %d SIGKILLs", records, since(runStart), killed)
				return finish(ctx, cluster, proc)
			}
		}
	}
}

// finish scrapes the processor's metrics, stops it with SIGTERM and prints the verifier's verdict.
func finish(ctx context.Context, cluster *testcontainers.Cluster, proc *procrun.Instance) error {
	// A processor restarted at the very end (a short run) may still be starting: a SIGTERM before it has set up
	// its signal handling would kill it outright instead of stopping it cleanly.
	readyCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err := testcontainers.WaitFor(readyCtx, "the processor to be ready", func(ctx context.Context) (bool, error) {
		return proc.Ready(ctx), nil
	})
	if err != nil {
		return err
	}
	for _, name := range []string{"eosproc_transactions_committed_total", "eosproc_transactions_aborted_total", "eosproc_records_out_total"} {
		if v, err := proc.Metric(ctx, name); err == nil {
			step("metric %s (this last run) = %.0f", name, v)
		}
	}
	code, err := proc.Stop(time.Minute)
	if err != nil {
		return err
	}
	step("processor stopped with SIGTERM, exit code %d", code)
	step("verifying with a read_committed reader of %s and %s", outputTopic, deadLetters)
	report, err := verify.Run(ctx, verify.Options{
		Bootstrap: cluster.BootstrapServers(), Inputs: []string{inputTopic}, Outputs: []string{outputTopic},
		DeadLetterTopic: deadLetters, SameValues: true,
	})
	if err != nil {
		return err
	}
	fmt.Println("verdict:", report)
	if !report.OK() {
		return errors.New("the outputs do not hold every input exactly once")
	}
	if code != 0 {
		return fmt.Errorf("processor exited %d after SIGTERM, want 0", code)
	}
	return nil
}

// generate writes records at about 25,000 a second, as a steady upstream, so the run lasts long enough for the
// kills to land mid-stream; it reports how many are acknowledged so far.
func generate(ctx context.Context, bootstrap string, records int, written *atomic.Int64) error {
	p, err := kafkatest.NewProducer(ctx, bootstrap, "")
	if err != nil {
		return err
	}
	defer p.Close()
	const chunk = 5_000
	pace := time.NewTicker(200 * time.Millisecond)
	defer pace.Stop()
	for from := 0; from < records; from += chunk {
		select {
		case <-pace.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := p.Send(ctx, kafkatest.Records(inputTopic, partitions, from, min(chunk, records-from), 100), true); err != nil {
			return err
		}
		written.Store(int64(min(from+chunk, records)))
	}
	return nil
}

func step(format string, args ...any) {
	fmt.Printf("[demo] "+format+"\n", args...)
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

// progress prints one line a second: on a terminal it rewrites the line in place, elsewhere it appends.
type progress struct {
	total    int
	tty      bool
	lastOut  int64
	lastTime time.Time
	dirty    bool
}

func newProgress(total int) *progress {
	fi, err := os.Stdout.Stat()
	return &progress{total: total, tty: err == nil && fi.Mode()&os.ModeCharDevice != 0, lastTime: time.Now()}
}

func (p *progress) print(in, out, lag int64) {
	now := time.Now()
	rate := float64(out-p.lastOut) / now.Sub(p.lastTime).Seconds()
	p.lastOut, p.lastTime = out, now
	line := fmt.Sprintf("in %7d  out %7d  rate %8.0f rec/s  lag %7d", in, out, max(rate, 0), lag)
	if p.tty {
		fmt.Print("\r\033[K" + line)
		p.dirty = true
		return
	}
	fmt.Println("[progress] " + line)
}

func (p *progress) note(format string, args ...any) {
	p.done()
	step(format, args...)
}

func (p *progress) done() {
	if p.dirty {
		fmt.Println()
		p.dirty = false
	}
}
