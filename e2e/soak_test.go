//go:build soak

package e2e

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/internal/kafkatest"
	"github.com/eosproc/eosproc/stream"
	"github.com/eosproc/eosproc/testcontainers"
)

// The soak (`make soak`, not part of `make test`): 3 brokers (replication 3, min.insync.replicas 2), 3 processor
// replicas under a supervisor that restarts them, a generator at half of what the replicas sustained in a
// fault-free first minute, and a fault every 30 s drawn at random, for SOAK_DURATION (default 1h). Replica 0 is
// never faulted: it is the control for memory. A read_committed checker reads the output as it is written and,
// every 5 minutes and at the end, checks that no input is out twice, that each input partition's records keep
// their order in every output partition, and that every record written more than two transaction timeouts
// before the check is out. SOAK_REPORT names the Markdown report to write (with an SVG plot beside it).

const (
	soakTransactionTimeout = 20 * time.Second
	soakFaultEvery         = 30 * time.Second
	soakCheckEvery         = 5 * time.Minute
	soakSampleEvery        = 10 * time.Second
	soakReplicas           = 3
	soakInputPartitions    = 6
	soakMaxPartitions      = 12
	soakRecordSize         = 100
	// soakFirstMinuteRate caps the generator while the sustainable rate is measured: enough to saturate the
	// replicas here, without the generator itself taking a whole core (the report says whether they kept up).
	soakFirstMinuteRate = 30_000
)

func soakDuration(t *testing.T) time.Duration {
	s := os.Getenv("SOAK_DURATION")
	if s == "" {
		return time.Hour
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 5*time.Minute {
		t.Fatalf("SOAK_DURATION=%q: want a duration of at least 5m, e.g. 10m or 1h", s)
	}
	return d
}

func TestSoak(t *testing.T) {
	duration := soakDuration(t)
	cluster := testcontainers.StartForTest(t, testcontainers.Options{Brokers: 3})
	// An hour at tens of thousands of records a second would fill the disk: the topics keep about 15 minutes, far
	// more than the checker (which reads the output as it is written) and the processors' lag need.
	f := fixtureOn(t, cluster, "soak-", fixtureOptions{inputPartitions: soakInputPartitions, outputPartitions: soakInputPartitions,
		topicConfig: map[string]string{"retention.ms": "900000", "segment.ms": "60000"}})
	ctx, cancel := context.WithTimeout(context.Background(), duration+30*time.Minute)
	defer cancel()
	s := &soak{f: f, began: time.Now(), rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 18))}
	t.Logf("soak for %s on %s; logs in %s", duration, cluster.Image(), f.logDir)

	gen, err := newGenerator(f)
	if err != nil {
		t.Fatal(err)
	}
	gen.setRate(soakFirstMinuteRate)
	genCtx, stopGen := context.WithCancel(ctx)
	genDone := make(chan struct{})
	go func() { defer close(genDone); gen.run(genCtx) }()

	s.check = newOutputChecker(f)
	checkCtx, stopCheck := context.WithCancel(ctx)
	checkDone := make(chan struct{})
	go func() { defer close(checkDone); s.check.run(checkCtx) }()
	defer func() { stopCheck(); <-checkDone }()

	// Sessions of 10 s rather than the suite's 6 s: 3 brokers, 3 replicas, the generator and the checker share 2
	// cores, and a coordinator that slow to answer a heartbeat is not a fault the soak means to inject.
	env := map[string]string{"PROCESSOR_CONSUMER_PROPERTIES": "session.timeout.ms=10000;heartbeat.interval.ms=2000"}
	for i := range soakReplicas {
		s.procs = append(s.procs, supervise(f, fmt.Sprintf("soak-p%d", i), env, env))
	}
	t.Cleanup(func() {
		for _, p := range s.procs {
			p.abandon()
		}
	})
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampleDone := make(chan struct{})
	go func() { defer close(sampleDone); s.sampleEvery(sampleCtx, soakSampleEvery) }()

	// The first minute, fault-free: the generator offers more than the replicas take, and what they commit in its
	// last 40 s is what they sustain.
	s.sleep(ctx, 20*time.Second)
	from, err := committedTotal(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	s.sleep(ctx, 40*time.Second)
	to, err := committedTotal(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	s.sustained = float64(to-from) / 40
	if lag, err := kafkatest.Lag(ctx, f.cluster.BootstrapServers(), f.group, []string{f.input}); err == nil {
		s.firstMinuteLag = lag
	}
	s.rate = math.Max(100, s.sustained/2)
	gen.setRate(s.rate)
	t.Logf("sustained %.0f records/s in the first minute; the generator now writes %.0f records/s", s.sustained, s.rate)

	// Faults every 30 s and checks every 5 minutes, until the duration is up.
	end := s.began.Add(duration)
	nextCheck := s.began.Add(soakCheckEvery)
	for time.Now().Add(soakFaultEvery).Before(end) && ctx.Err() == nil {
		faultAt := time.Now().Add(soakFaultEvery)
		for time.Now().Before(faultAt) {
			if !time.Now().Before(nextCheck) {
				s.runCheck(ctx, t, false)
				nextCheck = nextCheck.Add(soakCheckEvery)
			}
			s.sleep(ctx, min(time.Until(faultAt), time.Second))
		}
		s.inject(ctx, t, gen)
	}
	s.sleep(ctx, time.Until(end))

	// The end: the input stops, the lag drains, and every record written must be out exactly once.
	stopGen()
	<-genDone
	gen.close()
	f.waitCaughtUp(ctx)
	s.runCheck(ctx, t, true)
	stopSampling()
	<-sampleDone
	for _, p := range s.procs {
		p.stop(t)
		s.mu.Lock()
		s.exits = append(s.exits, p.exitNotes...)
		s.mu.Unlock()
	}
	s.aborted = abortTimes(f)
	report := s.report(cluster.Image(), duration)
	t.Log("\n" + report.text)
	if path := os.Getenv("SOAK_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report.text), 0o644); err != nil {
			t.Error(err)
		}
		if err := os.WriteFile(strings.TrimSuffix(path, ".md")+".svg", []byte(report.svg), 0o644); err != nil {
			t.Error(err)
		}
	}
	for _, failure := range report.failures {
		t.Error(failure)
	}
}

// soak is the run's state: what was injected, checked and sampled.
type soak struct {
	f         *fixture
	procs     []*supervised
	check     *outputChecker
	began     time.Time
	rng       *rand.Rand
	sustained float64 // records/s in the first minute
	// firstMinuteLag is the lag at its end: small, the replicas kept up, and sustained is a lower bound.
	firstMinuteLag int64
	rate           float64 // the generator's rate after it

	mu       sync.Mutex
	faults   []soakEvent
	checks   []checkResult
	samples  []soakSample
	exits    []string
	aborted  []time.Time
	lastHWMs []hwmSample // input high watermarks over time, for the checks' bound
}

type soakEvent struct {
	at   time.Duration
	what string
}

type soakSample struct {
	at         time.Duration
	lag        int64
	pids       []int     // per replica: a new one is a restart
	rss        []float64 // MB per replica, -1 when not running
	goroutines []float64
}

type hwmSample struct {
	at   time.Time
	hwms map[int32]int64
}

// sleep waits d or until ctx ends. The soak's faults and checks come at times of its schedule, not on conditions.
func (s *soak) sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (s *soak) since() time.Duration { return time.Since(s.began).Round(time.Second) }

// sampleEvery records, every interval: the group's lag, each replica's RSS and goroutines, and the input's high
// watermarks (the checks' bound).
func (s *soak) sampleEvery(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		sample := soakSample{at: s.since()}
		lag, err := kafkatest.Lag(ctx, s.f.cluster.BootstrapServers(), s.f.group, []string{s.f.input})
		if err != nil {
			lag = -1
		}
		sample.lag = lag
		for _, p := range s.procs {
			p.mu.Lock()
			cur := p.cur
			p.mu.Unlock()
			sample.pids = append(sample.pids, cur.PID())
			sample.rss = append(sample.rss, rssMB(cur.PID()))
			ask, cancel := context.WithTimeout(ctx, 2*time.Second)
			g, err := cur.Metric(ask, "go_goroutines")
			cancel()
			if err != nil {
				g = -1
			}
			sample.goroutines = append(sample.goroutines, g)
		}
		hwms, err := inputHighWatermarks(ctx, s.f)
		s.mu.Lock()
		s.samples = append(s.samples, sample)
		if err == nil {
			s.lastHWMs = append(s.lastHWMs, hwmSample{at: time.Now(), hwms: hwms})
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// rssMB is a process's resident set in MB, -1 if it is not running.
func rssMB(pid int) float64 {
	b, err := procStatusBytes(pid, "VmRSS")
	if err != nil {
		return -1
	}
	return float64(b) / (1 << 20)
}

// inputHighWatermarks are the input partitions' high watermarks: the input topic is written without
// transactions, so every offset below one is a record.
func inputHighWatermarks(ctx context.Context, f *fixture) (map[int32]int64, error) {
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": f.cluster.BootstrapServers(), "group.id": f.group + "-hwm", "log_level": 0})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	md, err := c.GetMetadata(&f.input, false, 10_000)
	if err != nil {
		return nil, err
	}
	hwms := map[int32]int64{}
	for _, p := range md.Topics[f.input].Partitions {
		_, high, err := c.QueryWatermarkOffsets(f.input, p.ID, 10_000)
		if err != nil {
			return nil, err
		}
		hwms[p.ID] = high
	}
	return hwms, ctx.Err()
}

// committedTotal is the sum of the group's committed input offsets.
func committedTotal(ctx context.Context, f *fixture) (int64, error) {
	committed, err := kafkatest.Committed(ctx, f.cluster.BootstrapServers(), f.group, f.input)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, o := range committed {
		sum += max(o, 0)
	}
	return sum, nil
}

// inject applies one fault drawn at random and records it.
func (s *soak) inject(ctx context.Context, t *testing.T, gen *generator) {
	type fault struct {
		name  string
		apply func() (string, error)
	}
	// Replica 0 is the control for memory: never faulted itself.
	victim := s.procs[1+s.rng.IntN(len(s.procs)-1)]
	brokerFaultOK := s.fullISR(ctx)
	faults := []fault{
		{"SIGKILL a processor", func() (string, error) {
			return victim.name + ": SIGKILL", victim.signal(syscall.SIGKILL)
		}},
		{"SIGTERM a processor", func() (string, error) {
			return victim.name + ": SIGTERM", victim.signal(syscall.SIGTERM)
		}},
		{"SIGSTOP a processor for 25 s", func() (string, error) {
			if err := victim.signal(syscall.SIGSTOP); err != nil {
				return "", err
			}
			s.sleep(ctx, 25*time.Second) // the length of the stop is the fault itself
			return victim.name + ": SIGSTOP, SIGCONT 25 s later", victim.signal(syscall.SIGCONT)
		}},
		{"a burst of 10x the rate for 10 s", func() (string, error) {
			gen.setRate(10 * s.rate)
			s.sleep(ctx, 10*time.Second)
			gen.setRate(s.rate)
			return fmt.Sprintf("generator: %.0f records/s for 10 s", 10*s.rate), nil
		}},
	}
	if partitions := s.inputPartitions(ctx); partitions < soakMaxPartitions && partitions > 0 {
		faults = append(faults, fault{"add an input partition", func() (string, error) {
			return fmt.Sprintf("input grown from %d to %d partitions", partitions, partitions+1),
				s.f.cluster.AddPartitions(ctx, s.f.input, partitions+1)
		}})
	}
	if brokerFaultOK {
		id := s.f.cluster.BrokerIDs()[s.rng.IntN(len(s.f.cluster.BrokerIDs()))]
		faults = append(faults,
			fault{"SIGKILL a broker and restart it", func() (string, error) {
				if err := s.f.cluster.KillBroker(ctx, id); err != nil {
					return "", err
				}
				return fmt.Sprintf("broker %d: SIGKILL and restart", id), s.f.cluster.StartBroker(ctx, id)
			}},
			fault{"cut a broker off the network for 20 s", func() (string, error) {
				if err := s.f.cluster.DisconnectBroker(ctx, id); err != nil {
					return "", err
				}
				s.sleep(ctx, 20*time.Second) // the length of the cut is the fault itself
				return fmt.Sprintf("broker %d: cut off the network for 20 s", id), s.f.cluster.ReconnectBroker(ctx, id)
			}})
	}
	fl := faults[s.rng.IntN(len(faults))]
	at := s.since()
	what, err := fl.apply()
	if err != nil {
		t.Fatalf("fault at %s (%s): %v", at, fl.name, err)
	}
	t.Logf("%s fault: %s", at, what)
	s.mu.Lock()
	s.faults = append(s.faults, soakEvent{at: at, what: what})
	s.mu.Unlock()
}

// fullISR reports whether every partition of the soak's topics has all 3 replicas in its ISR: only then may the
// next broker fault come, so that at most one broker is faulted at a time.
func (s *soak) fullISR(ctx context.Context) bool {
	for _, topic := range []string{s.f.input, s.f.output, s.f.dlq} {
		for p := 0; ; p++ {
			state, err := s.f.cluster.Partition(ctx, topic, p)
			if err != nil {
				if p == 0 {
					return false
				}
				break // past the last partition
			}
			if len(state.ISR) < 3 {
				return false
			}
		}
	}
	return true
}

func (s *soak) inputPartitions(ctx context.Context) int {
	hwms, err := inputHighWatermarks(ctx, s.f)
	if err != nil {
		return 0
	}
	return len(hwms)
}

// runCheck checks the output against the input written more than two transaction timeouts ago (at the end:
// all of it). A record that is only late is not lost: records missing at the check are looked for again for up to
// 2 minutes, and the check reports how many were late.
func (s *soak) runCheck(ctx context.Context, t *testing.T, final bool) {
	bound := time.Now().Add(-2 * soakTransactionTimeout)
	var hwms map[int32]int64
	if final {
		var err error
		if hwms, err = inputHighWatermarks(ctx, s.f); err != nil {
			t.Fatal(err)
		}
	} else {
		s.mu.Lock()
		for _, h := range s.lastHWMs {
			if h.at.Before(bound) {
				hwms = h.hwms
			}
		}
		s.mu.Unlock()
	}
	r := s.check.verify(hwms)
	late := r.missing
	for deadline := time.Now().Add(2 * time.Minute); r.missing > 0 && time.Now().Before(deadline); {
		s.sleep(ctx, 5*time.Second)
		r = s.check.verify(hwms)
	}
	r.late = late - r.missing
	r.at, r.final = s.since(), final
	t.Logf("%s check: %s", r.at, r)
	s.mu.Lock()
	s.checks = append(s.checks, r)
	s.mu.Unlock()
}

// generator writes 100-byte records with unique keys at a set rate, spread by key over the input's partitions
// (new ones included, once its metadata has them).
type generator struct {
	p      *kafka.Producer
	topic  string
	rate   atomic.Uint64 // float64 bits, records/s
	sent   atomic.Int64
	errors atomic.Int64
}

func newGenerator(f *fixture) (*generator, error) {
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": f.cluster.BootstrapServers(), "enable.idempotence": true, "linger.ms": 5,
		"go.delivery.reports": false, "topic.metadata.refresh.interval.ms": 10_000, "log_level": 0,
		"queue.buffering.max.messages": 1_000_000,
	})
	if err != nil {
		return nil, err
	}
	g := &generator{p: p, topic: f.input}
	go func() {
		for e := range p.Events() {
			if _, ok := e.(kafka.Error); ok {
				g.errors.Add(1)
			}
		}
	}()
	return g, nil
}

func (g *generator) setRate(r float64) { g.rate.Store(math.Float64bits(r)) }

func (g *generator) run(ctx context.Context) {
	value := make([]byte, soakRecordSize)
	for i := range value {
		value[i] = 'x'
	}
	last := time.Now()
	allowance := 0.0
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		allowance = min(allowance+math.Float64frombits(g.rate.Load())*now.Sub(last).Seconds(), 1e6)
		last = now
		for ; allowance >= 1; allowance-- {
			n := g.sent.Load()
			err := g.p.Produce(&kafka.Message{
				TopicPartition: kafka.TopicPartition{Topic: &g.topic, Partition: kafka.PartitionAny},
				Key:            strconv.AppendInt([]byte("k-"), n, 10), Value: value,
			}, nil)
			if err != nil {
				break // queue full: the allowance waits for the next tick
			}
			g.sent.Add(1)
		}
	}
}

func (g *generator) close() {
	g.p.Flush(60_000)
	g.p.Close()
}

// outputChecker reads the output with read_committed as it is written and keeps, per input partition, which
// offsets are out: a second one is a duplicate (which is also what a record of an aborted transaction that was
// visible becomes: its input is processed again), one at or below the last from the same input partition in an
// output partition is out of order.
type outputChecker struct {
	f  *fixture
	mu sync.Mutex
	// out holds the offsets seen per input partition, a bit each.
	out        map[int32][]uint64
	last       map[[2]int32]int64 // (output partition, input partition) -> last input offset
	read       map[int32]int64    // output partition -> next offset to read (re-reads after a rebalance are skipped)
	duplicates int
	outOfOrder int
	unexpected int
	examples   []string
	outputs    int64
	latencies  map[int][]float64 // ms, per 5-minute window since began
	began      time.Time
}

func newOutputChecker(f *fixture) *outputChecker {
	return &outputChecker{f: f, out: map[int32][]uint64{}, last: map[[2]int32]int64{}, read: map[int32]int64{},
		latencies: map[int][]float64{}, began: time.Now()}
}

func (c *outputChecker) run(ctx context.Context) {
	cons, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": c.f.cluster.BootstrapServers(), "group.id": c.f.group + "-checker",
		"isolation.level": "read_committed", "auto.offset.reset": "earliest", "enable.auto.commit": false,
		"log_level": 0,
	})
	if err != nil {
		c.f.t.Errorf("output checker: %v", err)
		return
	}
	defer cons.Close()
	if err := cons.Subscribe(c.f.output, nil); err != nil {
		c.f.t.Errorf("output checker: %v", err)
		return
	}
	for ctx.Err() == nil {
		m, ok := cons.Poll(100).(*kafka.Message)
		if !ok || m.TopicPartition.Error != nil {
			continue
		}
		c.record(m, time.Now())
	}
}

func (c *outputChecker) record(m *kafka.Message, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	outP, offset := m.TopicPartition.Partition, int64(m.TopicPartition.Offset)
	if next, ok := c.read[outP]; ok && offset < next {
		return // read again after the checker's own rebalance: not a second record
	}
	c.read[outP] = offset + 1
	c.outputs++
	src := headerOf(m, stream.SourceHeader)
	parts := strings.Split(src, "/")
	if len(parts) < 3 || strings.Join(parts[:len(parts)-2], "/") != c.f.input {
		c.unexpected++
		c.example(fmt.Sprintf("%s[%d]@%d names source %q", c.f.output, outP, offset, src))
		return
	}
	inP64, err1 := strconv.ParseInt(parts[len(parts)-2], 10, 32)
	inOffset, err2 := strconv.ParseInt(parts[len(parts)-1], 10, 64)
	if err1 != nil || err2 != nil || inOffset < 0 {
		c.unexpected++
		c.example(fmt.Sprintf("%s[%d]@%d names source %q", c.f.output, outP, offset, src))
		return
	}
	inP := int32(inP64)
	bits := c.out[inP]
	for int64(len(bits))*64 <= inOffset {
		bits = append(bits, make([]uint64, max(len(bits), 1024))...)
	}
	c.out[inP] = bits
	word, bit := inOffset/64, uint64(1)<<(inOffset%64)
	if bits[word]&bit != 0 {
		c.duplicates++
		c.example(fmt.Sprintf("input %s out again at %s[%d]@%d", src, c.f.output, outP, offset))
	}
	bits[word] |= bit
	key := [2]int32{outP, inP}
	if prev, ok := c.last[key]; ok && inOffset <= prev {
		c.outOfOrder++
		c.example(fmt.Sprintf("%s[%d]@%d: input %s after input offset %d", c.f.output, outP, offset, src, prev))
	}
	c.last[key] = inOffset
	if !m.Timestamp.IsZero() {
		window := int(now.Sub(c.began) / soakCheckEvery)
		c.latencies[window] = append(c.latencies[window], float64(now.Sub(m.Timestamp).Microseconds())/1000)
	}
}

func (c *outputChecker) example(s string) {
	if len(c.examples) < 10 {
		c.examples = append(c.examples, s)
	}
}

type checkResult struct {
	at                    time.Duration
	final                 bool
	bound                 int64 // input records the completeness check covered
	missing, late         int64
	duplicates, unordered int
	unexpected            int
	outputs               int64
	examples              []string
}

func (r checkResult) ok() bool {
	return r.missing == 0 && r.duplicates == 0 && r.unordered == 0 && r.unexpected == 0
}

func (r checkResult) String() string {
	verdict := "ok"
	if !r.ok() {
		verdict = "FAILED"
	}
	return fmt.Sprintf("%s: %d outputs read; of the %d inputs checked %d missing (%d were late), %d duplicates, %d out of order, %d unexpected",
		verdict, r.outputs, r.bound, r.missing, r.late, r.duplicates, r.unordered, r.unexpected)
}

// verify counts the offsets below hwms not out yet, with the checker's running counts.
func (c *outputChecker) verify(hwms map[int32]int64) checkResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := checkResult{duplicates: c.duplicates, unordered: c.outOfOrder, unexpected: c.unexpected, outputs: c.outputs,
		examples: slices.Clone(c.examples)}
	for p, hwm := range hwms {
		r.bound += hwm
		bits := c.out[p]
		for o := int64(0); o < hwm; o++ {
			if o/64 >= int64(len(bits)) || bits[o/64]&(1<<(o%64)) == 0 {
				r.missing++
				if r.missing <= 3 {
					r.examples = append(r.examples, fmt.Sprintf("input %s/%d/%d not out", c.f.input, p, o))
				}
			}
		}
	}
	return r
}

type soakReport struct {
	text, svg string
	failures  []string
}

// report writes the run up: settings, faults, checks, per-window latency and throughput, aborts, exits, memory.
func (s *soak) report(image string, duration time.Duration) soakReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	var failures []string
	fmt.Fprintf(&b, "# Soak\n\n`make soak` (SOAK_DURATION=%s) on %s, %s: 3 brokers (replication 3, min.insync.replicas 2), "+
		"%d processor replicas under a supervisor (transaction timeout %s), input %d partitions at the start (up to %d), "+
		"%d-byte records. Replica 0 is never faulted: the control for memory.\n\n",
		duration, time.Now().UTC().Format("2006-01-02"), image, soakReplicas, soakTransactionTimeout,
		soakInputPartitions, soakMaxPartitions, soakRecordSize)
	fmt.Fprintf(&b, "The replicas sustained **%.0f records/s** in the fault-free first minute (the generator offered up to %d/s; "+
		"lag at its end %d records%s); the generator then wrote %.0f records/s.\n\n",
		s.sustained, soakFirstMinuteRate, s.firstMinuteLag, map[bool]string{true: ": they kept up, so this is a lower bound", false: ""}[s.firstMinuteLag < soakFirstMinuteRate], s.rate)

	b.WriteString("## Checks\n\nEvery 5 minutes, of the records written more than two transaction timeouts before (at the end: all, after the input stopped and the lag drained):\n\n")
	b.WriteString("| at | verdict | inputs checked | missing | late (found on a second look) | duplicates | out of order | unexpected |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	finalSeen := false
	for _, r := range s.checks {
		verdict := "ok"
		if !r.ok() {
			verdict = "**FAILED**"
			failures = append(failures, fmt.Sprintf("check at %s: %s\n  %s", r.at, r, strings.Join(r.examples, "\n  ")))
		}
		at := r.at.String()
		if r.final {
			at += " (final)"
			finalSeen = true
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %d |\n", at, verdict, r.bound, r.missing, r.late, r.duplicates, r.unordered, r.unexpected)
	}
	if !finalSeen {
		failures = append(failures, "no final check")
	}

	b.WriteString("\n## Per 5-minute window\n\n| window | outputs read | records/s | p50 latency ms | p99 latency ms | aborted transactions |\n|---|---:|---:|---:|---:|---:|\n")
	windows := int(math.Ceil(time.Since(s.began).Seconds() / soakCheckEvery.Seconds()))
	aborts := make([]int, windows+1)
	for _, at := range s.aborted {
		if w := int(at.Sub(s.began) / soakCheckEvery); w >= 0 && w < len(aborts) {
			aborts[w]++
		}
	}
	s.check.mu.Lock()
	for w := range windows {
		lat := slices.Clone(s.check.latencies[w])
		slices.Sort(lat)
		fmt.Fprintf(&b, "| %s-%s | %d | %.0f | %.0f | %.0f | %d |\n", time.Duration(w)*soakCheckEvery, time.Duration(w+1)*soakCheckEvery,
			len(lat), float64(len(lat))/soakCheckEvery.Seconds(), percentile(lat, 0.50), percentile(lat, 0.99), aborts[w])
	}
	s.check.mu.Unlock()
	fmt.Fprintf(&b, "\nAborted transactions in all: %d.\n", len(s.aborted))

	fmt.Fprintf(&b, "\n## Faults (%d)\n\n| at | fault |\n|---|---|\n", len(s.faults))
	for _, e := range s.faults {
		fmt.Fprintf(&b, "| %s | %s |\n", e.at, e.what)
	}

	fmt.Fprintf(&b, "\n## Unexpected exits (%d)\n\nExits no fault caused; the supervisor restarted each. With the last line each instance logged:\n\n", len(s.exits))
	for _, e := range s.exits {
		fmt.Fprintf(&b, "- %s\n", e)
	}
	if len(s.exits) == 0 {
		b.WriteString("None.\n")
	}

	// Memory: the control replica's RSS over the second half, a least-squares slope. A restart (a broker fault can
	// end the control replica too) starts a new process, so the slope is taken over its longest incarnation there.
	b.WriteString("\n## Memory and goroutines\n\n")
	half := time.Since(s.began) / 2
	xs, rss, gor, restarts := controlStretch(s.samples, half)
	slope := slopeOf(xs, rss) * 10 // MB per 10 minutes
	gSlope := slopeOf(xs, gor) * 10
	span := 0.0
	if len(xs) > 0 {
		span = xs[len(xs)-1] - xs[0]
	}
	fmt.Fprintf(&b, "Control replica over the second half: %d restarts there; its longest incarnation there lasted %.0f minutes "+
		"(%d samples, every %s): RSS %.1f-%.1f MB, slope **%+.2f MB per 10 minutes** (bound: under 1); goroutines %.0f-%.0f, "+
		"slope %+.1f per 10 minutes.\n\n",
		restarts, span, len(xs), soakSampleEvery, minOf(rss), maxOf(rss), slope, minOf(gor), maxOf(gor), gSlope)
	switch {
	case duration < 30*time.Minute:
		b.WriteString("Not judged in a run under 30 minutes: its second half is too short to tell a leak from noise.\n\n")
	case span < 10:
		b.WriteString("Not judged: no incarnation of the control replica lasted 10 minutes in the second half.\n\n")
	default:
		if slope >= 1 {
			failures = append(failures, fmt.Sprintf("control replica RSS grows %.2f MB per 10 minutes over the second half, want under 1", slope))
		}
		// Flat: over the half, the fitted growth stays within a tenth of the mean count (and 10 goroutines).
		if growth := gSlope * half.Minutes() / 10; growth > max(10, 0.1*meanOf(gor)) {
			failures = append(failures, fmt.Sprintf("control replica goroutines grow by %.0f over the second half", growth))
		}
	}
	svgName := "soak.svg"
	if path := os.Getenv("SOAK_REPORT"); path != "" {
		svgName = strings.TrimSuffix(filepath.Base(path), ".md") + ".svg"
	}
	fmt.Fprintf(&b, "![lag and RSS over time](%s)\n", svgName)
	return soakReport{text: b.String(), svg: s.plot(), failures: failures}
}

// controlStretch returns the control replica's (replica 0's) samples from its longest incarnation after from:
// minutes, RSS and goroutines, and how many times it restarted after from.
func controlStretch(samples []soakSample, from time.Duration) (xs, rss, gor []float64, restarts int) {
	var cur struct{ xs, rss, gor []float64 }
	pid := 0
	for _, sm := range samples {
		if sm.at < from || len(sm.pids) == 0 {
			continue
		}
		if sm.pids[0] != pid {
			if pid != 0 {
				restarts++
			}
			pid = sm.pids[0]
			cur.xs, cur.rss, cur.gor = nil, nil, nil
		}
		if sm.rss[0] > 0 && sm.goroutines[0] > 0 {
			cur.xs = append(cur.xs, sm.at.Minutes())
			cur.rss = append(cur.rss, sm.rss[0])
			cur.gor = append(cur.gor, sm.goroutines[0])
		}
		if len(cur.xs) > len(xs) {
			xs, rss, gor = cur.xs, cur.rss, cur.gor
		}
	}
	return xs, rss, gor, restarts
}

func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// slopeOf is the least-squares slope of y over x.
func slopeOf(x, y []float64) float64 {
	n := float64(len(x))
	if n < 2 {
		return 0
	}
	mx, my := meanOf(x), meanOf(y)
	var sxy, sxx float64
	for i := range x {
		sxy += (x[i] - mx) * (y[i] - my)
		sxx += (x[i] - mx) * (x[i] - mx)
	}
	if sxx == 0 {
		return 0
	}
	return sxy / sxx
}

func meanOf(v []float64) float64 {
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return sum / math.Max(1, float64(len(v)))
}

func minOf(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	return slices.Min(v)
}

func maxOf(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	return slices.Max(v)
}

// plot draws the group's lag and each replica's RSS over time, with the faults marked, as an SVG.
func (s *soak) plot() string {
	const w, h, left, right, top, gap = 900.0, 250.0, 70.0, 20.0, 30.0, 60.0
	end := time.Since(s.began).Minutes()
	x := func(m float64) float64 { return left + (w-left-right)*m/math.Max(end, 1) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, 2*h+gap+top)
	colors := []string{"#1f77b4", "#d62728", "#2ca02c"}
	panel := func(y0 float64, title string, series [][]float64, names []string) {
		top := 0.0
		for _, sr := range series {
			for _, v := range sr {
				top = math.Max(top, v)
			}
		}
		top = math.Max(top*1.1, 1)
		y := func(v float64) float64 { return y0 + h - h*v/top }
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">%s (max %.0f)</text>`+"\n", left, y0-8, title, top/1.1)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`+"\n", left, y0, w-left-right, h)
		for _, e := range s.faults {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#ddd"/>`+"\n", x(e.at.Minutes()), y0, x(e.at.Minutes()), y0+h)
		}
		for i, sr := range series {
			var pts []string
			for j, v := range sr {
				if v >= 0 {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.samples[j].at.Minutes()), y(v)))
				}
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.2" points="%s"/>`+"\n", colors[i%len(colors)], strings.Join(pts, " "))
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="%s">%s</text>`+"\n", w-right-160, y0+16+14*float64(i), colors[i%len(colors)], names[i])
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">0</text><text x="%.0f" y="%.0f" text-anchor="end">%.0f min</text>`+"\n", left, y0+h+14, w-right, y0+h+14, end)
	}
	lag := make([]float64, len(s.samples))
	rss := make([][]float64, soakReplicas)
	for j, sm := range s.samples {
		lag[j] = float64(sm.lag)
		for i := range rss {
			v := -1.0
			if i < len(sm.rss) {
				v = sm.rss[i]
			}
			rss[i] = append(rss[i], v)
		}
	}
	panel(top, "group lag (records); grey lines: faults", [][]float64{lag}, []string{"lag"})
	names := []string{"replica 0 (control)", "replica 1", "replica 2"}
	panel(top+h+gap, "RSS per replica (MB)", rss, names[:soakReplicas])
	b.WriteString("</svg>\n")
	return b.String()
}

// The memory verdict takes the control replica's longest incarnation: a restart's fresh process must not pass for
// a fall in memory, nor its growth back for a leak.
func TestControlStretch(t *testing.T) {
	var samples []soakSample
	for i := range 30 {
		pid := 100
		if i >= 12 {
			pid = 200 // restarted at sample 12
		}
		samples = append(samples, soakSample{at: time.Duration(i) * time.Minute, pids: []int{pid},
			rss: []float64{50 + float64(i%12)}, goroutines: []float64{15}})
	}
	xs, rss, _, restarts := controlStretch(samples, 5*time.Minute)
	if restarts != 1 || len(xs) != 18 || xs[0] != 12 || rss[0] != 50 {
		t.Fatalf("stretch from minute %v, %d samples, %d restarts; want the second incarnation: minute 12, 18 samples, 1 restart", xs[0], len(xs), restarts)
	}
}
