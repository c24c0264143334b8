package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/consume"
	"github.com/eosproc/eosproc/internal/librdkafka"
	"github.com/eosproc/eosproc/internal/procrun"
	"github.com/eosproc/eosproc/stream"
	"github.com/eosproc/eosproc/testcontainers"
)

// Run is one peer draining one backlog.
type Run struct {
	Workload        string  `json:"workload"`
	Peer            string  `json:"peer"`
	Guarantee       string  `json:"guarantee"`
	BatchInterval   string  `json:"batch_interval"`
	Repeat          int     `json:"repeat"`
	WarmupRound     int     `json:"warmup_round,omitempty"` // of a warm-up drain (Repeat 0), in no median
	MaxBatchRecords int     `json:"max_batch_records,omitempty"`
	Records         int     `json:"records"`
	Seconds         float64 `json:"seconds"`         // from the process's start until every offset is committed
	StartupSeconds  float64 `json:"startup_seconds"` // from the start until the first offsets are committed
	RecordsPerSec   float64 `json:"records_per_sec"`
	MBPerSec        float64 `json:"mb_per_sec"`
	CPUSeconds      float64 `json:"cpu_seconds"`
	CPUPerMillion   float64 `json:"cpu_seconds_per_million_records"`
	PeakRSSMB       float64 `json:"peak_rss_mb"`
	// The broker's CPU time during the run, and the part of it its JIT compiler threads took (broker.go).
	BrokerCPUSeconds float64 `json:"broker_cpu_seconds,omitempty"`
	BrokerJITSeconds float64 `json:"broker_jit_seconds,omitempty"`
	VsCopyCeiling    float64 `json:"vs_copy_ceiling"`   // records/s over the librdkafka copy's
	VsBrokerCeiling  float64 `json:"vs_broker_ceiling"` // over the lower of Kafka's own producer and consumer tools
	// Progress is the group's committed records, sampled every progressEvery: [seconds since start, records].
	Progress [][2]float64 `json:"progress"`
}

// Latency is end-to-end latency at a fixed input rate.
type Latency struct {
	Workload      string  `json:"workload"`
	Peer          string  `json:"peer"`
	Guarantee     string  `json:"guarantee"`
	BatchInterval string  `json:"batch_interval"`
	Repeat        int     `json:"repeat"`
	Load          string  `json:"load,omitempty"`         // loadHalfCapacity, or empty for half the drain rate
	TargetRate    float64 `json:"target_records_per_sec"` // half the drain rate (see latencyLoad) or the capacity
	Rate          float64 `json:"records_per_sec"`
	// Sustained is the records that reached the output over the time from the generator's start to the last
	// one's arrival: below Rate when the peer fell behind.
	Sustained     float64 `json:"sustained_records_per_sec"`
	Samples       int     `json:"samples"`
	P50Ms         float64 `json:"p50_ms"`
	P99Ms         float64 `json:"p99_ms"`
	P999Ms        float64 `json:"p999_ms"`
	MaxMs         float64 `json:"max_ms"`
	CPUPerMillion float64 `json:"cpu_seconds_per_million_records"`
	PeakRSSMB     float64 `json:"peak_rss_mb"`
	// PerSecond is, per second of the run (by arrival), [seconds since the generator started, p99 ms].
	PerSecond [][2]float64 `json:"p99_per_second"`
}

// A drain's clock stops at the first poll that finds the group's committed offsets at the end, so the poll
// interval bounds its error: at 200 ms, drains of 4-6 s were timed in steps of 4%, as coarse as the ratios the
// targets ask for. A poll is one OffsetFetch on an open connection. Progress is kept at a coarser step for the
// plot.
const (
	pollEvery     = 20 * time.Millisecond
	progressEvery = 200 * time.Millisecond
)

// defaultInterval is the processor's default batch interval, which the default-settings run uses: the
// backpressure-off run it is compared with has the same.
const defaultInterval = consume.DefaultBatchInterval

// peer is one configuration measured: the processor with the given settings, or the Kafka Streams copy
// application.
type peer struct {
	Name      string            // peerProcessor, peerDefaults or peerStreams
	Guarantee string            // exactly_once or at_least_once
	Interval  time.Duration     // batch interval, or Kafka Streams' commit.interval.ms; 0 for the processor's default
	Env       map[string]string // added to the processor's environment (the profiled run)
	Load      string            // a latency run's load: loadHalfCapacity, or empty for half the drain rate
}

// loadHalfCapacity marks the latency runs at half the capacity measured in their setup (see capacity).
const loadHalfCapacity = "half capacity"

const (
	peerProcessor    = "processor"
	peerBackpressure = "processor, backpressure on"
	peerSerial       = "processor, serial loop"
	peerDefaults     = "processor, default settings"
	peerStreams      = "Kafka Streams exactly_once_v2"
)

// intervalName is how a peer's interval appears in the tables.
func (p peer) intervalName() string {
	if p.Interval == 0 {
		return "default"
	}
	return p.Interval.String()
}

func (p peer) String() string {
	if p.Load != "" {
		return fmt.Sprintf("%s %s %s at %s", p.Name, p.Guarantee, p.intervalName(), p.Load)
	}
	return fmt.Sprintf("%s %s %s", p.Name, p.Guarantee, p.intervalName())
}

// env is the processor's configuration in the tuned runs. Backpressure is off: with an identity transform the
// processor is never slower than the broker lets it be; the defaults peer shows what backpressure on costs.
func (b *bench) env(in, out, group, mode string, interval time.Duration, maxBatch int) map[string]string {
	env := b.defaultsEnv(in, out, group)
	maps.Copy(env, map[string]string{
		"PROCESSOR_PROCESSING_GUARANTEE": mode,
		"PROCESSOR_BATCH_INTERVAL":       interval.String(),
		"PROCESSOR_MAX_BATCH_RECORDS":    strconv.Itoa(maxBatch),
		"PROCESSOR_BACKPRESSURE_ENABLED": "false",
	})
	maps.Copy(env, b.opts.extraEnv)
	return env
}

// defaultsEnv is what a user must set: where to read and write, and the names.
func (b *bench) defaultsEnv(in, out, group string) map[string]string {
	return map[string]string{
		"PROCESSOR_BROKERS":           b.cluster.BootstrapServers(),
		"PROCESSOR_INPUT_TOPICS":      in,
		"PROCESSOR_OUTPUT_TOPIC":      out,
		"PROCESSOR_DEAD_LETTER_TOPIC": "bench-dlq",
		"PROCESSOR_APP_ID":            group,
		"PROCESSOR_INSTANCE_ID":       "bench-0",
	}
}

// startPeer starts p reading in and writing out as group (the processor's app id, Kafka Streams' application.id,
// both its consumer group), with its log in the work directory.
func (b *bench) startPeer(p peer, w workload, in, out, group string) (*procrun.Instance, error) {
	logPath := filepath.Join(b.workDir, group+".log")
	switch p.Name {
	case peerStreams:
		return procrun.StartCommand([]string{"java", "-cp", b.streamsClasspath, "eosproc.bench.CopyApp"}, group, logPath,
			map[string]string{"BROKERS": b.cluster.BootstrapServers(), "INPUT_TOPIC": in, "OUTPUT_TOPIC": out,
				"APP_ID": group, "COMMIT_INTERVAL_MS": strconv.FormatInt(p.Interval.Milliseconds(), 10)})
	case peerDefaults:
		return procrun.Start(b.bin, group, logPath, b.defaultsEnv(in, out, group))
	default:
		env := b.env(in, out, group, p.Guarantee, p.Interval, w.maxBatch)
		maps.Copy(env, p.Env)
		return procrun.Start(b.bin, group, logPath, env)
	}
}

// ready reports whether a peer has joined its group and can process records: the processor's /readyz, or Kafka
// Streams' state RUNNING in its log.
func ready(ctx context.Context, p peer, proc *procrun.Instance) bool {
	if p.Name == peerStreams {
		return strings.Contains(proc.Log(), "to RUNNING")
	}
	return proc.Ready(ctx)
}

// throughput runs p from the beginning of w's backlog with a fresh group and output topic, and times it until
// the group's committed offsets reach the end of the backlog.
func (b *bench) throughput(ctx context.Context, w workload, p peer, repeat int) (Run, error) {
	out, group := b.nextName("bench-out"), b.nextName("bench-group")
	if err := b.cluster.CreateTopic(ctx, out, partitions, 1, nil); err != nil {
		return Run{}, err
	}
	defer b.dropTopics(out)
	watch, err := newOffsetWatch(b.cluster.BootstrapServers(), group, w.topic)
	if err != nil {
		return Run{}, err
	}
	defer watch.close()
	if repeat < 0 {
		step("%s %s (warm-up round %d): draining %d records", w.name, p, -repeat, w.records)
	} else {
		step("%s %s (%d of %d): draining %d records", w.name, p, repeat, b.opts.repeats, w.records)
	}
	brokerCPU, brokerJIT := b.brokerCPU()
	start := time.Now()
	proc, err := b.startPeer(p, w, w.topic, out, group)
	if err != nil {
		return Run{}, err
	}
	defer proc.Kill()
	r := Run{Workload: w.name, Peer: p.Name, Guarantee: p.Guarantee, BatchInterval: p.intervalName(), Repeat: repeat, Records: w.records}
	if p.Name == peerProcessor {
		r.MaxBatchRecords = w.maxBatch
	}
	if repeat < 0 {
		r.Repeat, r.WarmupRound = 0, -repeat
	}
	deadline := time.After(10 * time.Minute)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return Run{}, ctx.Err()
		case <-deadline:
			return Run{}, fmt.Errorf("%s %s: backlog not drained after 10 minutes; log %s", w.name, p, proc.LogPath)
		case <-proc.Done():
			return Run{}, fmt.Errorf("%s exited with code %d while draining; log %s:\n%s", p, proc.ExitCode(), proc.LogPath, testcontainers.LastLines(proc.Log(), 40))
		case <-tick.C:
		}
		done, err := watch.committed(ctx)
		if err != nil {
			continue // the group is forming or the broker is busy: the next poll tells
		}
		t := time.Since(start).Seconds()
		if done > 0 && r.StartupSeconds == 0 {
			r.StartupSeconds = t
		}
		if n := len(r.Progress); n == 0 || t-r.Progress[n-1][0] >= progressEvery.Seconds() || done >= int64(w.records) {
			r.Progress = append(r.Progress, [2]float64{t, float64(done)})
		}
		if done >= int64(w.records) {
			r.Seconds = t
			break
		}
	}
	cpu, rss, err := procStats(proc.PID())
	if err != nil {
		return Run{}, err
	}
	brokerCPUEnd, brokerJITEnd := b.brokerCPU()
	r.BrokerCPUSeconds, r.BrokerJITSeconds = brokerCPUEnd-brokerCPU, brokerJITEnd-brokerJIT
	if _, err := proc.Stop(time.Minute); err != nil {
		return Run{}, err
	}
	r.RecordsPerSec = float64(w.records) / r.Seconds
	r.MBPerSec = float64(w.records) * float64(w.size) / r.Seconds / mib
	r.CPUSeconds, r.CPUPerMillion, r.PeakRSSMB = cpu, cpu/float64(w.records)*1e6, rss/mib
	step("  %.1f s (start-up %.1f s): %.0f records/s, %.1f MB/s, %.1f CPU s per million, peak RSS %.0f MB",
		r.Seconds, r.StartupSeconds, r.RecordsPerSec, r.MBPerSec, r.CPUPerMillion, r.PeakRSSMB)
	return r, nil
}

// profile drains w once more with p under the CPU profiler and keeps the top of the profile.
func (b *bench) profile(ctx context.Context, w workload, p peer) error {
	path := filepath.Join(b.workDir, "cpu.pprof")
	p.Env = map[string]string{"PROCESSOR_TEST_CPU_PROFILE": path}
	run, err := b.throughput(ctx, w, p, 0)
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=30", b.bin, path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %w\n%s", err, out)
	}
	b.res.Profile = Profile{Run: fmt.Sprintf("%s %s, %.0f records/s", w.name, p, run.RecordsPerSec), Top: string(out)}
	return nil
}

// latencyLoad is the peer whose median maximum sets a latency run's load: its own, but for the processor's
// backpressure-on, default-settings and default-interval runs that of the backpressure-off run at 100 ms, so that
// they are measured under the very load they are compared at.
func latencyLoad(p peer) peer {
	if p.Name == peerBackpressure || p.Name == peerDefaults || p.Name == peerSerial ||
		p.Name == peerProcessor && p.Interval == defaultInterval {
		return peer{Name: peerProcessor, Guarantee: p.Guarantee, Interval: 100 * time.Millisecond}
	}
	return p
}

// latencyRig is a peer reading a fresh input topic and writing a fresh output topic, and a read_committed reader
// of that output: what the latency runs and the capacity search feed with the generator.
type latencyRig struct {
	b           *bench
	in, out     string
	proc        *procrun.Instance
	gen         *generator
	reader      *latencyReader
	stopReading context.CancelFunc
	readDone    chan error
}

// startLatencyRig creates the topics, starts p (and waits until it is ready, if awaitReady) and the reader and
// the generator; close releases them.
func (b *bench) startLatencyRig(ctx context.Context, w workload, p peer, awaitReady bool) (_ *latencyRig, err error) {
	r := &latencyRig{b: b, in: b.nextName("bench-lat-in"), out: b.nextName("bench-lat-out")}
	group := b.nextName("bench-lat-group")
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	for _, t := range []string{r.in, r.out} {
		if err := b.cluster.CreateTopic(ctx, t, partitions, 1, nil); err != nil {
			return nil, err
		}
	}
	if r.proc, err = b.startPeer(p, w, r.in, r.out, group); err != nil {
		return nil, err
	}
	for awaitReady && !ready(ctx, p, r.proc) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.proc.Done():
			return nil, fmt.Errorf("%s exited with code %d before it was ready; log %s:\n%s", p, r.proc.ExitCode(), r.proc.LogPath, testcontainers.LastLines(r.proc.Log(), 40))
		case <-time.After(100 * time.Millisecond):
		}
	}
	if r.reader, err = newLatencyReader(b.cluster.BootstrapServers(), r.out); err != nil {
		return nil, err
	}
	readCtx, stopReading := context.WithCancel(ctx)
	r.stopReading, r.readDone = stopReading, make(chan error, 1)
	go func() { r.readDone <- r.reader.run(readCtx) }()
	if r.gen, err = newGenerator(b.cluster.BootstrapServers(), r.in, w.size); err != nil {
		return nil, err
	}
	return r, nil
}

// awaitOutput waits until sent records reached the output, for as long as they keep arriving: a peer that fell
// behind the load drains its backlog (the figures show it), and only one that stopped delivering for 15 s fails.
func (r *latencyRig) awaitOutput(sent int) error {
	last, lastAt := r.reader.count(), time.Now()
	for last < sent && time.Since(lastAt) < 15*time.Second {
		time.Sleep(50 * time.Millisecond)
		if n := r.reader.count(); n > last {
			last, lastAt = n, time.Now()
		}
	}
	if last < sent {
		return fmt.Errorf("latency run: %d of %d records reached the output; log %s", last, sent, r.proc.LogPath)
	}
	return nil
}

// stop stops the reader and then the peer, and returns the peer's CPU seconds and peak RSS.
func (r *latencyRig) stop() (cpu, rss float64, err error) {
	r.stopReading()
	r.stopReading = nil
	if err := <-r.readDone; err != nil {
		return 0, 0, err
	}
	if cpu, rss, err = procStats(r.proc.PID()); err != nil {
		return 0, 0, err
	}
	_, err = r.proc.Stop(time.Minute)
	return cpu, rss, err
}

// close kills what stop did not stop and drops the topics.
func (r *latencyRig) close() {
	if r.gen != nil {
		r.gen.close()
	}
	if r.stopReading != nil {
		r.stopReading()
		<-r.readDone
	}
	if r.proc != nil {
		r.proc.Kill()
	}
	r.b.dropTopics(r.in, r.out)
}

// latency feeds a fresh input topic at half of the configuration's drain rate (or of the processor's capacity,
// for the runs at half capacity), each record stamped with its send time, and measures when each output becomes
// visible to a read_committed reader. The processor copies the input timestamp to the output (stream.Identity
// keeps it, produce passes it on), so the output's timestamp is the send time.
func (b *bench) latency(ctx context.Context, w workload, p peer, repeat int) error {
	load := latencyLoad(p)
	if len(b.opts.variants) > 0 {
		load = b.opts.variants[0] // variants compare under one load
	}
	rate := b.res.median(w.name, load).RecordsPerSec / 2
	if p.Load == loadHalfCapacity {
		rate = b.res.Capacity.RecordsPerSec / 2
	}
	if b.opts.latencyRate > 0 {
		rate = b.opts.latencyRate
	}
	step("%s %s: latency at %.0f records/s for %s", w.name, p, rate, b.opts.latencyFor)
	// The processor gets its load from a cold start, as a user's would: the generator starts with the process,
	// and the warm-up left out of the figures covers its start-up. Kafka Streams, whose start-up takes seconds
	// longer, is measured once it runs.
	rig, err := b.startLatencyRig(ctx, w, p, p.Name == peerStreams)
	if err != nil {
		return err
	}
	defer rig.close()
	genStart := time.Now()
	sent, err := rig.gen.run(ctx, rate, b.opts.latencyFor)
	if err != nil {
		return err
	}
	if err := rig.awaitOutput(sent); err != nil {
		return err
	}
	cpu, rss, err := rig.stop()
	if err != nil {
		return err
	}
	l := rig.reader.summary(genStart, b.opts.latencyWarmup)
	l.Workload, l.Peer, l.Guarantee, l.BatchInterval, l.Load, l.TargetRate = w.name, p.Name, p.Guarantee, p.intervalName(), p.Load, rate
	l.Repeat = repeat
	l.Rate = float64(sent) / b.opts.latencyFor.Seconds()
	l.CPUPerMillion, l.PeakRSSMB = cpu/float64(sent)*1e6, rss/mib
	step("  %.0f records/s: p50 %.0f ms, p99 %.0f ms, p99.9 %.0f ms (%d samples after %s warm-up)",
		l.Rate, l.P50Ms, l.P99Ms, l.P999Ms, l.Samples, b.opts.latencyWarmup)
	b.res.Latencies = append(b.res.Latencies, l)
	return nil
}

// Capacity is the highest load a configuration kept up with in the latency runs' setup.
type Capacity struct {
	Workload      string  `json:"workload"`
	Peer          string  `json:"peer"`
	Guarantee     string  `json:"guarantee"`
	BatchInterval string  `json:"batch_interval"`
	DrainRate     float64 `json:"drain_records_per_sec"` // the median drain the steps are fractions of
	RecordsPerSec float64 `json:"records_per_sec"`       // the highest step kept up with; 0 if none
	// Steps are [records/s, median latency ms of the records sent in the step's last capacityTail].
	Steps [][2]float64 `json:"steps"`
}

// The capacity search's steps: a peer that falls 3% short of a step's rate is 300 ms behind by its end, while
// one that keeps up delivers within its batch interval and commit (median 80-150 ms at 100 ms batches here).
const (
	capacityStep  = 10 * time.Second
	capacityTail  = 3 * time.Second
	capacityLagMs = 300.0
)

// capacity is the highest load p keeps up with in the latency runs' setup, in steps of a tenth of its median
// drain rate from 0.4 of it. The drain rate is measured with nothing else running; under a generator and a
// read_committed reader on the same cores, with the broker taking the input as well, the peer sustains less, so
// half the drain rate can be most of what the machine sustains. Half the capacity is the load at which the
// whole setup runs half loaded. A step is kept up with when the records sent in its last capacityTail reached
// the output with a median latency of at most capacityLagMs.
func (b *bench) capacity(ctx context.Context, w workload, p peer) error {
	drain := b.res.median(w.name, p).RecordsPerSec
	c := Capacity{Workload: w.name, Peer: p.Name, Guarantee: p.Guarantee, BatchInterval: p.intervalName(), DrainRate: drain}
	step("%s %s: capacity, in 10 s steps from 0.4 of its drain rate (%.0f records/s)", w.name, p, drain)
	// From a running peer: the start-up's backlog, caught up at the capacity's margin over the step's rate, kept
	// the first step's median latency at 800 ms when the steps began with the process.
	rig, err := b.startLatencyRig(ctx, w, p, true)
	if err != nil {
		return err
	}
	defer rig.close()
	sent := 0
	for tenths := 4; tenths <= 10; tenths++ {
		rate := drain * float64(tenths) / 10
		stepStart := time.Now()
		n, err := rig.gen.run(ctx, rate, capacityStep)
		if err != nil {
			return err
		}
		sent += n
		if err := rig.awaitOutput(sent); err != nil {
			return err
		}
		lag := rig.reader.medianLatency(stepStart.Add(capacityStep-capacityTail), stepStart.Add(capacityStep))
		c.Steps = append(c.Steps, [2]float64{rate, lag})
		step("  %.0f records/s: median latency %.0f ms over the step's last %s", rate, lag, capacityTail)
		if lag > capacityLagMs {
			break
		}
		c.RecordsPerSec = rate
	}
	if _, _, err := rig.stop(); err != nil {
		return err
	}
	b.res.Capacity = c
	return nil
}

// generator produces records of one size to one topic at a set rate. The records due at each 5 ms tick go to
// librdkafka in one call (the processor's own producer, copying them): producing one record per cgo call took
// about half a core at 280,000 records/s on this machine, and the generator, the reader, the peer and the broker
// share its 2 cores. Each record is stamped with its tick's time, taken just before the call, which hands a
// tick's records over in well under 1 ms; a wait for a full local queue counts as latency. One producer serves
// every step of a capacity search: a new one per step connected and caught up on its schedule in a burst, which
// showed as a latency spike at every step.
type generator struct {
	p     *librdkafka.Producer
	topic string
	value []byte
	next  int // the next record's key
}

func newGenerator(bootstrap, topic string, size int) (*generator, error) {
	p, err := librdkafka.NewProducer(map[string]string{
		"bootstrap.servers": bootstrap, "enable.idempotence": "true", "acks": "all", "linger.ms": "1", "log_level": "3",
	}, librdkafka.Hooks{})
	if err != nil {
		return nil, err
	}
	return &generator{p: p, topic: topic, value: bytes.Repeat([]byte{'x'}, size)}, nil
}

// run produces at rate records/s for d and returns how many it produced, once librdkafka has delivered them.
func (g *generator) run(ctx context.Context, rate float64, d time.Duration) (int, error) {
	var recs []stream.Record
	var keys []byte
	start := time.Now()
	sent := 0
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for time.Since(start) < d {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
		}
		// Catch up to the schedule each tick, so a late tick does not lower the rate.
		due := int(rate * time.Since(start).Seconds())
		recs, keys = recs[:0], keys[:0]
		now := time.Now()
		for ; sent < due; sent++ {
			k := len(keys)
			keys = strconv.AppendInt(keys, int64(g.next), 10)
			g.next++
			recs = append(recs, stream.Record{Key: keys[k:len(keys):len(keys)], Value: g.value, Timestamp: now})
		}
		for done := 0; done < len(recs); {
			n, err := g.p.Produce(recs[done:], g.topic, false)
			done += n
			if err == nil {
				break
			}
			var ke interface{ Code() kafka.ErrorCode }
			if !errors.As(err, &ke) || ke.Code() != kafka.ErrQueueFull {
				return 0, fmt.Errorf("generate: %w", err)
			}
			_ = g.p.Flush(time.Millisecond) // the queue drains as the broker acknowledges
		}
	}
	for g.p.Pending() > 0 {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		_ = g.p.Flush(time.Second)
	}
	if err := g.p.DeliveryError(); err != nil {
		return 0, fmt.Errorf("generate: %w", err)
	}
	return sent, nil
}

func (g *generator) close() { g.p.Close() }

// latencyReader is a read_committed reader of every partition of the output topic from its beginning. It reads in
// batches, through the processor's own librdkafka consumer with a manual assignment: a reader taking one record
// per cgo call (confluent-kafka-go's Poll) tops out near the processor's half load on this machine, and then the
// figures measure the reader falling behind, not the processor.
type latencyReader struct {
	c     *librdkafka.Consumer
	fatal error // a fatal librdkafka error, set from the Error hook inside Consume
	// samples are [arrival, latency] in nanoseconds since the epoch and nanoseconds.
	mu      sync.Mutex
	samples [][2]int64
}

func newLatencyReader(bootstrap, topic string) (*latencyReader, error) {
	r := &latencyReader{}
	c, err := librdkafka.NewConsumer(map[string]string{
		"bootstrap.servers": bootstrap, "group.id": "bench-latency-reader", "isolation.level": "read_committed",
		"enable.auto.commit": "false", "log_level": "3",
		// A committed batch is fetched within 10 ms: the reader's own long-poll must not be what is measured.
		"fetch.wait.max.ms": "10",
		// With librdkafka's default of 1 s, a partition whose fetched records passed the queue's thresholds waits
		// that long before its next fetch, and the reader then lagged for the rest of the run: in the bench before
		// this was set, 7 of 18 processor latency runs "fell behind" (sustained 165,000-183,000 of 306,000
		// records/s, p50 10-16 s) while, in debug runs showing the same, the processor had committed every record
		// at the generated rate. The processor's own consumer backs off 10 ms.
		"fetch.queue.backoff.ms": "10",
	}, librdkafka.Hooks{
		Error: func(e kafka.Error) {
			if e.IsFatal() && r.fatal == nil {
				r.fatal = e
			}
		},
		Rebalance: func(bool, []kafka.TopicPartition) {}, // never called: the reader does not subscribe
	})
	if err != nil {
		return nil, err
	}
	var assignment []kafka.TopicPartition
	for p := range partitions {
		assignment = append(assignment, kafka.TopicPartition{Topic: &topic, Partition: int32(p), Offset: kafka.OffsetBeginning})
	}
	if err := c.IncrementalAssign(assignment); err != nil {
		c.Close()
		return nil, err
	}
	r.c = c
	return r, nil
}

func (r *latencyReader) run(ctx context.Context) error {
	defer r.c.Close()
	buf := make([]stream.Record, 0, 10_000)
	for ctx.Err() == nil {
		recs, errs, err := r.c.Consume(50*time.Millisecond, cap(buf), buf[:0])
		if err != nil {
			return fmt.Errorf("latency reader: %w", err)
		}
		if len(errs) > 0 {
			return fmt.Errorf("latency reader: partition %s: %w", errs[0].Partition, errs[0].Err)
		}
		if r.fatal != nil {
			return fmt.Errorf("latency reader: %w", r.fatal)
		}
		// The records of one call were fetched before it returned: they arrive together.
		now := time.Now()
		r.mu.Lock()
		for i := range recs {
			r.samples = append(r.samples, [2]int64{now.UnixNano(), now.Sub(recs[i].Timestamp).Nanoseconds()})
		}
		r.mu.Unlock()
	}
	return nil
}

func (r *latencyReader) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.samples)
}

// summary computes the percentiles of the records sent after warmup, and the p99 of every second by arrival.
func (r *latencyReader) summary(start time.Time, warmup time.Duration) Latency {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []float64
	perSecond := map[int][]float64{}
	for _, s := range r.samples {
		sentAt := time.Unix(0, s[0]-s[1])
		ms := float64(s[1]) / 1e6
		if sentAt.Sub(start) >= warmup {
			all = append(all, ms)
		}
		sec := int(time.Unix(0, s[0]).Sub(start).Seconds())
		perSecond[sec] = append(perSecond[sec], ms)
	}
	slices.Sort(all)
	l := Latency{Samples: len(all), P50Ms: quantile(all, 0.5), P99Ms: quantile(all, 0.99), P999Ms: quantile(all, 0.999)}
	if len(all) > 0 {
		l.MaxMs = all[len(all)-1]
	}
	if n := len(r.samples); n > 0 {
		last := time.Unix(0, r.samples[n-1][0])
		l.Sustained = float64(n) / last.Sub(start).Seconds()
	}
	for _, sec := range slices.Sorted(maps.Keys(perSecond)) {
		v := perSecond[sec]
		slices.Sort(v)
		l.PerSecond = append(l.PerSecond, [2]float64{float64(sec) + 0.5, quantile(v, 0.99)})
	}
	return l
}

// medianLatency is the median latency in milliseconds of the records sent in [from, to).
func (r *latencyReader) medianLatency(from, to time.Time) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var v []float64
	for _, s := range r.samples {
		if sentAt := s[0] - s[1]; sentAt >= from.UnixNano() && sentAt < to.UnixNano() {
			v = append(v, float64(s[1])/1e6)
		}
	}
	slices.Sort(v)
	return quantile(v, 0.5)
}

// quantile of sorted values, nearest rank.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// offsetWatch reads a group's committed offsets on one topic with one long-lived client: a client per poll
// (kafkatest.Lag) costs a connection and a metadata round trip each time, which at fifty polls a second would be
// load the benchmark adds to the machine it measures. The client is a consumer of the group that never
// subscribes, not an admin client: librdkafka's ListConsumerGroupOffsets crashes the process when it meets a
// coordinator still loading the group (librdkafka issue 5040), which a benchmark's fresh group often is.
type offsetWatch struct {
	consumer *kafka.Consumer
	parts    []kafka.TopicPartition
}

func newOffsetWatch(bootstrap, group, topic string) (*offsetWatch, error) {
	consumer, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": group,
		"enable.auto.commit": false, "log_level": 3,
		// A read_committed client asks for stable offsets: while a transaction with offsets is open, which in an
		// exactly_once drain is most of the time, the coordinator answers UNSTABLE_OFFSET_COMMIT and librdkafka
		// asks again after retry.backoff.ms (100 ms, then longer), so exactly_once drains were timed late. Without
		// it the coordinator answers at once with the committed offsets, which never include an open
		// transaction's.
		"isolation.level": "read_uncommitted"})
	if err != nil {
		return nil, err
	}
	w := &offsetWatch{consumer: consumer}
	for p := range partitions {
		w.parts = append(w.parts, kafka.TopicPartition{Topic: &topic, Partition: int32(p)})
	}
	return w, nil
}

// committed is the sum of the group's committed offsets: the records it has processed, since the backlog's
// topics start at offset 0. Offsets of a transaction not yet committed are not counted.
func (w *offsetWatch) committed(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	offsets, err := w.consumer.Committed(w.parts, 5000)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, tp := range offsets {
		if tp.Offset >= 0 {
			sum += int64(tp.Offset)
		}
	}
	return sum, nil
}

func (w *offsetWatch) close() { w.consumer.Close() }

// procStats reads a process's CPU time (user+system) and peak resident set (VmHWM) from /proc, in seconds and
// bytes. It must be called before the process exits.
func procStats(pid int) (cpuSeconds, peakRSS float64, err error) {
	_, cpuSeconds, err = statCPU(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("process %d: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("peak RSS of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			peakRSS = kb * 1024
		}
	}
	return cpuSeconds, peakRSS, nil
}

// dropTopics deletes a run's own topics once it is over. Every drain writes a whole backlog again and every
// latency run half a minute of load (about 1.4 GB of input and output at 300,000 records/s), which a full bench
// would otherwise leave on the broker's disk: a backlog of 1,000,000 x 1 KB once filled it mid-run. It then waits
// until the broker has removed their files and the kernel has written out what the run left dirty, so that the
// next run does not pay for this one's disk work: the run after a 1 KB drain would otherwise share the machine
// with the writeback of about 2 GB (the kernel writes dirty pages out after 30 s) and with the broker deleting
// the files (a minute after the topic, by default). A failure is only reported: the figures are taken by then.
func (b *bench) dropTopics(topics ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, t := range topics {
		if err := b.cluster.DeleteTopic(ctx, t); err != nil {
			step("  could not delete topic %s after its run: %v", t, err)
		}
	}
	err := testcontainers.WaitFor(ctx, "the broker to remove deleted topics' files", func(ctx context.Context) (bool, error) {
		code, out, err := b.cluster.Exec(ctx, 1, []string{"ls", testcontainers.LogDir})
		if err != nil || code != 0 {
			return false, fmt.Errorf("ls %s in the broker's container (exit code %d): %v %s", testcontainers.LogDir, code, err, out)
		}
		// A deleted partition's directory is renamed to <topic>-<partition>.<id>-delete until its files go.
		return !strings.Contains(out, "-delete"), nil
	})
	if err != nil {
		step("  %v", err)
	}
	syscall.Sync()
}
