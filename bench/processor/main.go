// Command processor measures the real processor binary against the broker's own ceiling, side by side in one
// run on a fresh single-broker Kafka (6 partitions), because absolute figures on a shared machine drift between
// runs while ratios taken minutes apart hold:
//
//   - the ceiling: Kafka's ProducerPerformance (which also pre-loads the backlogs) and ConsumerPerformance run
//     inside the broker's container from the broker's own jars, and a plain librdkafka consume and
//     consume-then-produce copy (no transactions) through the same Go client the processor uses;
//   - throughput of the processor draining each backlog (100-byte and 1 KB records), exactly_once and
//     at_least_once, 100 ms and 1 s batches, with its CPU seconds and peak RSS read from /proc;
//   - end-to-end latency (producer timestamp to visible to a read_committed reader) at half the drain rate, and
//     for the target's configuration also at half its capacity with the latency runs' generator and reader.
//
// It prints a markdown table, and writes every figure as JSON and a plot of throughput and latency over time as
// SVG. `make bench` runs it; docs/benchmarks.md keeps the latest results.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/eosproc/eosproc/consume"
	"github.com/eosproc/eosproc/internal/procrun"
	"github.com/eosproc/eosproc/testcontainers"
)

const partitions = 6

// options are the benchmark's knobs; the defaults keep `make bench` within about 40 minutes on 2 cores.
type options struct {
	smallRecords  int // backlog of 100-byte records
	largeRecords  int // backlog of 1 KB records
	maxBatchSmall int // PROCESSOR_MAX_BATCH_RECORDS for 100-byte records
	maxBatchLarge int // and for 1 KB records
	latencyFor    time.Duration
	latencyWarmup time.Duration
	latencyRate   float64 // records/s of every latency run; 0: half of each configuration's measured maximum
	jsonPath      string
	svgPath       string
	extraEnv      map[string]string // added to every tuned processor run's environment, to compare settings
	repeats       int               // runs of each throughput configuration, alternating, for medians
	streams       bool              // measure the Kafka Streams peer too
	only          *regexp.Regexp    // measure only the configurations whose name matches (tuning experiments)
	variants      []peer            // instead of the usual configurations, these side by side (tuning experiments)
	quick         bool              // skip the ceilings, the profile and the latency runs (tuning experiments)
	report        string            // a finished run's JSON file to report again instead of measuring
	warmupRounds  int               // at most this many rounds of every configuration before the timed ones
}

func main() {
	var o options
	flag.IntVar(&o.smallRecords, "small", 2_000_000, "backlog of 100-byte records")
	flag.IntVar(&o.largeRecords, "large", 1_000_000, "backlog of 1 KB records")
	flag.IntVar(&o.maxBatchSmall, "max-batch-small", consume.DefaultMaxBatchRecords, "PROCESSOR_MAX_BATCH_RECORDS with 100-byte records in the tuned runs")
	flag.IntVar(&o.maxBatchLarge, "max-batch-large", consume.DefaultMaxBatchRecords, "PROCESSOR_MAX_BATCH_RECORDS with 1 KB records in the tuned runs")
	flag.DurationVar(&o.latencyFor, "latency-for", 30*time.Second, "how long each latency run generates records")
	flag.DurationVar(&o.latencyWarmup, "latency-warmup", 5*time.Second, "first part of a latency run left out of the figures")
	flag.Float64Var(&o.latencyRate, "latency-rate", 0, "records/s of every latency run instead of half of each configuration's measured maximum, so that runs of separate invocations compare (tuning experiments)")
	flag.StringVar(&o.jsonPath, "json", "docs/benchmarks.json", "where every figure is written")
	flag.StringVar(&o.svgPath, "svg", "docs/benchmarks.svg", "where the plot is written")
	flag.IntVar(&o.repeats, "repeats", 5, "runs of each throughput and latency configuration (alternating); ratios are of medians")
	flag.Func("only", "measure only the configurations whose name (e.g. \"100 B processor exactly_once 100ms\") matches this regexp", func(v string) (err error) {
		o.only, err = regexp.Compile(v)
		return err
	})
	flag.IntVar(&o.warmupRounds, "warmup-rounds", 3, "at most this many untimed rounds of every configuration before the timed ones; they stop early once the broker's JIT compiler took at most 10% of its CPU in one")
	flag.StringVar(&o.report, "report", "", "instead of measuring, read this JSON file of an earlier run, recompute its ratios and targets and write its report (stdout, -json, -svg) again")
	flag.BoolVar(&o.quick, "quick", false, "skip the ceilings (ProducerPerformance still writes the backlogs, untimed), the profile and the latency runs")
	flag.BoolVar(&o.streams, "streams", true, "measure the Kafka Streams copy application beside the processor (needs a JDK and Maven: scripts/kstreams-app.sh)")
	o.extraEnv = map[string]string{}
	flag.Func("env", "NAME=VALUE added to the environment of every processor run but the default-settings ones (repeatable), e.g. PROCESSOR_CONSUMER_PROPERTIES=...",
		func(s string) error { return addSetting(o.extraEnv, s) })
	flag.Func("variant", "LABEL:NAME=VALUE[,NAME=VALUE...]: measure, instead of the usual configurations, the processor (exactly_once, 100 ms) with these settings, beside every other -variant, alternating, the latency runs all at half the first variant's drain rate unless -latency-rate (repeatable), e.g. -variant small:PROCESSOR_BATCH_RECORDS=10000 -variant large:PROCESSOR_BATCH_RECORDS=20000",
		func(s string) error {
			label, settings, ok := strings.Cut(s, ":")
			if !ok || label == "" {
				return fmt.Errorf("%q is not LABEL:NAME=VALUE[,NAME=VALUE...]", s)
			}
			env := map[string]string{}
			for _, kv := range strings.Split(settings, ",") {
				if err := addSetting(env, kv); err != nil {
					return fmt.Errorf("-variant %s: %w", label, err)
				}
			}
			guarantee := "exactly_once"
			if g, ok := env["PROCESSOR_PROCESSING_GUARANTEE"]; ok {
				guarantee = g // so that the tables say what ran
			}
			o.variants = append(o.variants, peer{Name: peerProcessor + " " + label, Guarantee: guarantee,
				Interval: 100 * time.Millisecond, Env: env})
			return nil
		})
	flag.Parse()
	tclog.SetDefault(tclog.NewNoopLogger())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if o.report != "" {
		err = rereport(o)
	} else {
		err = run(ctx, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// addSetting adds NAME=VALUE to env.
func addSetting(env map[string]string, setting string) error {
	k, v, ok := strings.Cut(setting, "=")
	if !ok {
		return fmt.Errorf("%q is not NAME=VALUE", setting)
	}
	env[k] = v
	return nil
}

// measures says whether -only lets configuration p run on workload w.
func (o options) measures(w workload, p peer) bool {
	return o.only == nil || o.only.MatchString(w.name+" "+p.String())
}

// inTurn is the order of the configurations in the repeat-th round (from 1): each round starts one configuration
// later than the round before. In a fixed order the first configuration of a backlog always ran right after the
// other backlog's last drain and the deletion of its topics, and each configuration always after the same one,
// so that whatever a drain leaves behind (the broker's garbage, the page cache, the disk's writeback) could fall
// on the same configuration in every repeat and move a ratio the same way each time.
func inTurn(peers []peer, repeat int) []peer {
	if len(peers) == 0 {
		return nil
	}
	k := (repeat - 1) % len(peers)
	return append(slices.Clone(peers[k:]), peers[:k]...)
}

// workload is one record size with its pre-loaded backlog.
type workload struct {
	name     string // "100 B", "1 KB"
	size     int
	records  int
	topic    string
	maxBatch int
}

func run(ctx context.Context, o options) error {
	began := time.Now()
	res := &Results{Started: began, Machine: describeMachine()}
	step("starting a single-broker Kafka (%s)", testcontainers.Image())
	// A deleted topic's files go at once rather than a minute later (the broker's default), in the middle of a
	// later run; dropTopics waits for them.
	cluster, err := testcontainers.Start(ctx, testcontainers.Options{BrokerConfig: map[string]string{"log.segment.delete.delay.ms": "0"}})
	if err != nil {
		return err
	}
	defer cluster.Terminate(context.WithoutCancel(ctx))
	res.Machine.KafkaImage = cluster.Image()
	b := &bench{cluster: cluster, opts: o, res: res}
	if b.jvm, err = b.brokerJVM(ctx); err != nil {
		step("the broker's JVM is not readable in this host's /proc (%v): no broker CPU figures, one warm-up round", err)
	}
	if o.streams {
		step("building the Kafka Streams peer (scripts/kstreams-app.sh)")
		out, err := exec.CommandContext(ctx, "scripts/kstreams-app.sh").Output()
		if err != nil {
			return fmt.Errorf("build the Kafka Streams peer: %w", err)
		}
		b.streamsClasspath = strings.TrimSpace(string(out))
	}

	workDir, err := os.MkdirTemp("", "eosproc-bench-")
	if err != nil {
		return err
	}
	step("building the processor binary (logs in %s)", workDir)
	if b.bin, err = procrun.Build(ctx, workDir); err != nil {
		return err
	}
	b.workDir = workDir
	if err := cluster.CreateTopic(ctx, "bench-dlq", 1, 1, nil); err != nil {
		return err
	}

	loads := []workload{
		{name: "100 B", size: 100, records: o.smallRecords, topic: "bench-in-100", maxBatch: o.maxBatchSmall},
		{name: "1 KB", size: 1024, records: o.largeRecords, topic: "bench-in-1k", maxBatch: o.maxBatchLarge},
	}
	// Ceilings first: ProducerPerformance is also what writes the backlogs the processor drains afterwards.
	for _, w := range loads {
		if o.quick {
			if err := b.preload(ctx, w); err != nil {
				return err
			}
			continue
		}
		if err := b.ceilings(ctx, w); err != nil {
			return err
		}
	}
	// Every configuration once per repeat, in turn (inTurn), so that the drift of a shared machine hits all
	// alike; the tables report each run and the medians.
	peers := []peer{
		{Name: peerProcessor, Guarantee: "exactly_once", Interval: 100 * time.Millisecond},
		{Name: peerProcessor, Guarantee: "at_least_once", Interval: 100 * time.Millisecond},
		{Name: peerProcessor, Guarantee: "exactly_once", Interval: time.Second},
		{Name: peerProcessor, Guarantee: "at_least_once", Interval: time.Second},
		{Name: peerDefaults, Guarantee: "exactly_once"},
		// The loop without pipelining, to show what pipelining gains on this machine.
		{Name: peerSerial, Guarantee: "exactly_once", Interval: 100 * time.Millisecond,
			Env: map[string]string{"PROCESSOR_TEST_SERIAL_LOOP": "true"}},
	}
	if len(o.variants) > 0 {
		peers = o.variants
	} else if o.streams {
		peers = append(peers,
			peer{Name: peerStreams, Guarantee: "exactly_once", Interval: 100 * time.Millisecond},
			peer{Name: peerStreams, Guarantee: "exactly_once", Interval: time.Second})
	}
	// The first drain of each backlog ran up to a quarter slower than the ones after it in every run (the
	// broker's first transactions and first reads of the backlog), and the broker's JIT compiler goes on for
	// minutes after that (broker.go), longer for exactly_once, whose broker code the ceilings do not run: with a
	// single first drain, exactly_once / at_least_once was 0.85-1.00 (median 0.90) in the first five alternating
	// pairs of a quick run and 0.86-1.03 (median 0.98) in the eleven after them. A broker in service has long
	// paid that cost, so rounds of every configuration, in the order of the timed ones, go first, and no median
	// counts them: until the compiler took at most warmJITShare of the broker's CPU in a round, or for
	// warmupRounds.
	for round := 1; round <= o.warmupRounds; round++ {
		var cpu, jit float64
		for _, w := range loads {
			for _, p := range peers {
				if !o.measures(w, p) {
					continue
				}
				warm, err := b.throughput(ctx, w, p, -round)
				if err != nil {
					return err
				}
				res.Warmups = append(res.Warmups, warm)
				cpu, jit = cpu+warm.BrokerCPUSeconds, jit+warm.BrokerJITSeconds
			}
		}
		if b.jvm == 0 || cpu == 0 {
			break // nothing tells whether the broker is warm: one round
		}
		step("warm-up round %d: the broker's JIT compiler took %.0f%% of its %.1f CPU s", round, 100*jit/cpu, cpu)
		if jit <= warmJITShare*cpu {
			break
		}
	}
	for repeat := 1; repeat <= o.repeats; repeat++ {
		for _, w := range loads {
			for _, p := range inTurn(peers, repeat) {
				if !o.measures(w, p) {
					continue
				}
				run, err := b.throughput(ctx, w, p, repeat)
				if err != nil {
					return err
				}
				res.Runs = append(res.Runs, run)
			}
		}
	}
	if o.quick {
		peers = nil // no profile, no latency runs
	} else if err := b.profile(ctx, loads[0], peers[0]); err != nil {
		return err
	}
	// Latency at half of each peer's median maximum, with 100-byte records; the configurations users run with
	// backpressure on (100 ms, and the default settings) under the load of the backpressure-off run at 100 ms.
	// Every configuration once per repeat, in turn (inTurn).
	var latencyPeers []peer
	for _, p := range peers {
		if p.Guarantee == "at_least_once" || p.Name == peerDefaults {
			continue
		}
		if p.Name == peerSerial {
			continue // appended beside the pipelined run at 100 ms
		}
		latencyPeers = append(latencyPeers, p)
		if p.Name == peerProcessor && p.Interval == 100*time.Millisecond {
			latencyPeers = append(latencyPeers,
				peer{Name: peerBackpressure, Guarantee: p.Guarantee, Interval: p.Interval,
					Env: map[string]string{"PROCESSOR_BACKPRESSURE_ENABLED": "true"}},
				peer{Name: peerSerial, Guarantee: p.Guarantee, Interval: p.Interval,
					Env: map[string]string{"PROCESSOR_TEST_SERIAL_LOOP": "true"}},
				peer{Name: peerProcessor, Guarantee: p.Guarantee, Interval: defaultInterval},
				peer{Name: peerDefaults, Guarantee: p.Guarantee})
		}
	}
	if len(o.variants) > 0 && !o.quick {
		latencyPeers = o.variants
	}
	// The target's configuration also at half the capacity it has in the latency runs' setup.
	if len(peers) > 0 && len(o.variants) == 0 && o.latencyRate == 0 {
		target := slices.IndexFunc(latencyPeers, func(p peer) bool { return p.String() == peers[0].String() })
		if target >= 0 && o.measures(loads[0], peers[0]) {
			if err := b.capacity(ctx, loads[0], peers[0]); err != nil {
				return err
			}
			if res.Capacity.RecordsPerSec > 0 {
				half := peers[0]
				half.Load = loadHalfCapacity
				latencyPeers = slices.Insert(latencyPeers, target+1, half)
			}
		}
	}
	for repeat := 1; repeat <= o.repeats; repeat++ {
		for _, p := range inTurn(latencyPeers, repeat) {
			if !o.measures(loads[0], p) {
				continue
			}
			if err := b.latency(ctx, loads[0], p, repeat); err != nil {
				return err
			}
		}
	}
	res.Took = time.Since(began).Round(time.Second).String()
	if err := report(res, o); err != nil {
		return err
	}
	step("wrote %s and %s in %s", o.jsonPath, o.svgPath, res.Took)
	return nil
}

// report computes the ratios and targets of res and writes its report: the tables on stdout, the figures to
// o.jsonPath and the plot to o.svgPath.
func report(res *Results, o options) error {
	res.computeRatios()
	fmt.Println()
	res.writeMarkdown(os.Stdout)
	for path, write := range map[string]func(string) error{o.jsonPath: res.writeJSON, o.svgPath: res.writeSVG} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := write(path); err != nil {
			return err
		}
	}
	return nil
}

// rereport writes the report of the run whose figures o.report holds again, with this version's ratios and
// tables: no Kafka, no measuring.
func rereport(o options) error {
	b, err := os.ReadFile(o.report)
	if err != nil {
		return fmt.Errorf("read the figures of an earlier run: %w", err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("read the figures of an earlier run: %s is not a bench JSON file: %w", o.report, err)
	}
	if err := report(&res, o); err != nil {
		return err
	}
	step("wrote %s and %s from %s", o.jsonPath, o.svgPath, o.report)
	return nil
}

type bench struct {
	cluster *testcontainers.Cluster
	opts    options
	res     *Results
	bin     string
	workDir string
	// streamsClasspath runs the Kafka Streams peer (scripts/kstreams-app.sh builds it).
	streamsClasspath string
	seq              int // numbers topics and groups, so every run starts fresh
	jvm              int // the broker's JVM on this host, zero where /proc does not show it
}

func step(format string, args ...any) {
	fmt.Printf("[bench %s] "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
