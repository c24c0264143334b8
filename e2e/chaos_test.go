package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/internal/kafkatest"
	"github.com/eosproc/eosproc/internal/procrun"
	"github.com/eosproc/eosproc/internal/verify"
	"github.com/eosproc/eosproc/stream"
	"github.com/eosproc/eosproc/testcontainers"
)

// The fault suite, at the bar of Kafka's own transactions system test: 3 brokers, replication 3,
// min.insync.replicas 2, clean and hard bounces of brokers and of the copying processors, deliberate aborts, a
// partition leader cut off the network, a processor frozen past its transaction timeout, and a single-partition
// run that checks exact order. A read_committed reader watches the output during the faults and a final one
// reads it all: no duplicate, nothing lost, nothing aborted ever visible.
//
// `make test` runs it with 20,000 records per scenario; `make chaos` with CHAOS_RECORDS=100000 and
// CHAOS_REPORT=docs/chaos.md, where the results table is kept.

type chaosScenario struct {
	name             string
	inputPartitions  int
	outputPartitions int
	processors       int
	faults           int
	env              map[string]string
	firstEnv         map[string]string // added for processor 0's first start only: a fault it injects in itself once
	// inject applies fault k (1-based) to the run and says what it did.
	inject func(ctx context.Context, run *chaosRun, k int) (string, error)
	// bounded scenarios must also pass without an unexpected processor exit and with at most maxAborted aborted
	// transactions: faults the processor is meant to ride out, not merely survive.
	bounded    bool
	maxAborted int
	// extraRecords are written by inject, beyond the n written before the processors start.
	extraRecords int
	// setup, when set, prepares more of the run before the processors start and returns variables for them.
	setup func(ctx context.Context, f *fixture, n int) (map[string]string, error)
}

type chaosResult struct {
	scenario                  string
	records, duplicates, lost int
	visibleAborted, aborted   int
	faults, unexpectedExits   int
	duration                  time.Duration
	ok                        bool
	verdict                   string
}

func chaosRecords(t *testing.T) int {
	if s := os.Getenv("CHAOS_RECORDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 {
			t.Fatalf("CHAOS_RECORDS=%q: want a number of records, at least 100", s)
		}
		return n
	}
	return 20_000
}

func TestChaosMatrix(t *testing.T) {
	n := chaosRecords(t)
	var results []chaosResult
	image := ""
	// Registered before the cluster starts, so it runs after the cluster's cleanup has dumped the broker logs: the
	// table and the failures' details are the last thing a failed run prints, where a truncated log keeps them.
	t.Cleanup(func() {
		table := chaosTable(results, image)
		t.Log("\n" + table)
		if path := os.Getenv("CHAOS_REPORT"); path != "" {
			if err := writeChaosReport(path, table, n); err != nil {
				t.Error(err)
			}
		}
	})
	cluster := testcontainers.StartForTest(t, testcontainers.Options{Brokers: 3})
	image = cluster.Image()
	scenarios := []chaosScenario{
		{name: "clean bounce brokers", faults: 3, inject: bounceBroker(false)},
		{name: "hard bounce brokers", faults: 3, inject: bounceBroker(true)},
		{name: "clean bounce processors", faults: 4, inject: bounceProcessor(syscall.SIGTERM)},
		{name: "hard bounce processors", faults: 4, inject: bounceProcessor(syscall.SIGKILL)},
		{name: "random aborts (1/3)", env: map[string]string{"PROCESSOR_TEST_ABORT_RATIO": "0.33"}},
		{name: "leader cut off the network", faults: 1, inject: cutOffLeader},
		{name: "processor frozen past its transaction timeout", faults: 1, inject: freezePastTimeout,
			env: map[string]string{"PROCESSOR_TRANSACTION_TIMEOUT": "8s"}},
		{name: "processor frozen inside a transaction", faults: 1, inject: thawStoppedInTransaction,
			env:      map[string]string{"PROCESSOR_TRANSACTION_TIMEOUT": "8s"},
			firstEnv: map[string]string{"PROCESSOR_TEST_STOP_IN_TRANSACTION": "3"}},
		// Sessions longer than the stop and the outage: the row is about the offsets, not about a rebalance. Not
		// bounded: on a busy machine librdkafka's send_offsets_to_transaction sometimes never returns once its
		// group coordinator's broker was killed (librdkafka issue 5456, open in 2.11); the processor then exits 1
		// at transaction timeout + 30 s and its restart settles the transaction. The table shows such exits.
		{name: "group coordinator killed as offsets are sent", faults: 1, inject: killCoordinator,
			env: map[string]string{"PROCESSOR_TRANSACTION_TIMEOUT": "40s",
				"PROCESSOR_CONSUMER_PROPERTIES": "session.timeout.ms=45000;heartbeat.interval.ms=3000"},
			firstEnv: map[string]string{"PROCESSOR_TEST_STOP_IN_TRANSACTION": "3"}},
		// No exit; the batches that reach the new changelog partition before the producer's metadata (refreshed
		// every 5 s) does are aborted and redone, with growing back-off: a few per processor.
		{name: "input partitions added, with de-duplication", faults: 1, inject: addInputPartitions(2, 4_000), extraRecords: 4_000,
			env: map[string]string{"PROCESSOR_DEDUPE_IDENTITY": "key"}, bounded: true, maxAborted: 30},
		// The deleted topic's partitions are lost: a processor owning some drops the batch in flight and the one
		// assembled beside it, and rewinds its other partitions: at most 2 aborts per processor.
		{name: "one of two input topics deleted", faults: 1, setup: secondInput, inject: deleteSecondInput, bounded: true, maxAborted: 4},
		{name: "single partition, exact order", inputPartitions: 1, outputPartitions: 1, processors: 1, faults: 3,
			inject: bounceProcessor(syscall.SIGKILL), env: map[string]string{"PROCESSOR_TEST_ABORT_RATIO": "0.2"}},
	}
	for i, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			r := runChaos(t, cluster, fmt.Sprintf("c%d-", i), n, sc)
			results = append(results, r)
			if !r.ok {
				t.Errorf("%s: %s", sc.name, r.verdict)
			}
		})
	}
}

// chaosRun is one scenario in progress: its fixture and its supervised processors.
type chaosRun struct {
	f     *fixture
	procs []*supervised
}

func runChaos(t *testing.T, cluster *testcontainers.Cluster, name string, n int, sc chaosScenario) chaosResult {
	if sc.inputPartitions == 0 {
		sc.inputPartitions, sc.outputPartitions = 2, 3
	}
	if sc.processors == 0 {
		sc.processors = 2
	}
	f := fixtureOn(t, cluster, name, fixtureOptions{inputPartitions: sc.inputPartitions, outputPartitions: sc.outputPartitions})
	// Generous for the records (a 100,000-record scenario takes about 2 minutes), yet short enough that a hung
	// scenario fails the run well inside CI's limit.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute+time.Duration(n)*6*time.Millisecond)
	defer cancel()
	f.produce(ctx, sc.inputPartitions, 0, n, nil)

	// Debug logs name each committed batch's input offsets, to match against a verdict's examples.
	env := map[string]string{"PROCESSOR_MAX_BATCH_RECORDS": "1000", "PROCESSOR_LOG_LEVEL": "debug"}
	for k, v := range sc.env {
		env[k] = v
	}
	if sc.setup != nil {
		more, err := sc.setup(ctx, f, n)
		if err != nil {
			t.Fatalf("set up %s: %v", sc.name, err)
		}
		maps.Copy(env, more)
	}
	started := time.Now()
	run := &chaosRun{f: f}
	for i := range sc.processors {
		first := env
		if i == 0 && sc.firstEnv != nil {
			first = maps.Clone(env)
			maps.Copy(first, sc.firstEnv)
		}
		run.procs = append(run.procs, supervise(f, fmt.Sprintf("%sp%d", name, i), first, env))
		if i == 0 && sc.firstEnv != nil {
			// Its fault is in its own transactions: started together, the others could take every partition
			// and drain the input before it joined, and the fault would never come.
			if err := run.procs[0].waitReadyOrStopped(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Registered after the fixture's, so it runs first: a scenario that fails half-way must not leave a supervisor
	// restarting processors the fixture kills, to run on through the scenarios after it.
	t.Cleanup(func() {
		for _, p := range run.procs {
			p.abandon()
		}
	})
	watcher := watchOutput(f)

	injected := 0
	for k := 1; k <= sc.faults; k++ {
		f.waitProgress(ctx, int64(n-n*k/(sc.faults+1)))
		what, err := sc.inject(ctx, run, k)
		if err != nil {
			t.Fatalf("fault %d: %v", k, err)
		}
		injected++
		t.Logf("fault %d: %s", k, what)
	}
	f.waitCaughtUp(ctx)
	duration := time.Since(started)
	unexpected := 0
	for _, p := range run.procs {
		unexpected += p.stop(t)
	}
	report, err := verify.Run(ctx, verify.Options{
		Bootstrap: cluster.BootstrapServers(), Inputs: []string{f.input}, Outputs: []string{f.output},
		DeadLetterTopic: f.dlq, SameValues: true,
		// A processor that was wedged inside a transaction when it exited leaves it open until the broker aborts
		// it (transaction timeout, at most 20 s here, plus the broker's 10 s abort sweep); until then it hides
		// every later committed output of the partitions it wrote to.
		Settle: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	final, err := outputPositions(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	seen := watcher.stop(final)
	// What the reader saw during the faults must be exactly what the final reader sees: anything else was visible
	// once and then not (an aborted record), and a source seen twice was a duplicate, however briefly.
	visibleAborted := 0
	for pos := range seen.positions {
		if !final[pos] {
			visibleAborted++
		}
	}
	r := chaosResult{
		scenario: sc.name, records: report.Inputs, duplicates: report.Duplicates + seen.duplicates,
		lost: report.Missing, visibleAborted: visibleAborted, aborted: abortsLogged(f),
		faults: injected, unexpectedExits: unexpected, duration: duration,
	}
	r.ok = report.OK() && seen.duplicates == 0 && visibleAborted == 0 && report.Inputs == n+sc.extraRecords &&
		len(seen.positions) == len(final)
	r.verdict = fmt.Sprintf("%s; during the faults the reader saw %d records, %d duplicated, %d later gone (final %d)",
		report, len(seen.positions), seen.duplicates, visibleAborted, len(final))
	if sc.bounded && (unexpected > 0 || r.aborted > sc.maxAborted) {
		r.ok = false
		r.verdict += fmt.Sprintf("; %d unexpected exits and %d aborted transactions, want none and at most %d",
			unexpected, r.aborted, sc.maxAborted)
	}
	t.Log(r.verdict)
	if !r.ok {
		t.Log(explainSources(f.logDir, report.Examples))
	}
	return r
}

// supervised restarts its processor whenever it exits, as Kubernetes would, until stopped.
type supervised struct {
	f        *fixture
	name     string
	env      map[string]string
	mu       sync.Mutex
	cur      *procrun.Instance
	expected syscall.Signal // the signal the test sent to end the current instance, 0 if none
	stopping bool
	exits    int // exits nobody caused
	// exitNotes explain each of them: when, the exit code and the instance's last log line.
	exitNotes []string
	done      chan struct{}
}

// noteExit records an exit nobody caused.
func (s *supervised) noteExit(in *procrun.Instance, why string) {
	s.exits++
	s.exitNotes = append(s.exitNotes, fmt.Sprintf("%s, %s: %s, exit %d; last line: `%s`", time.Now().UTC().Format(time.TimeOnly),
		s.name, why, in.ExitCode(), strings.TrimSpace(testcontainers.LastLines(in.Log(), 1))))
}

// supervise starts the instance with first and restarts it with env.
func supervise(f *fixture, name string, first, env map[string]string) *supervised {
	s := &supervised{f: f, name: name, env: env, done: make(chan struct{})}
	s.cur = f.start(name, first)
	go s.loop()
	return s
}

func (s *supervised) loop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		cur := s.cur
		s.mu.Unlock()
		<-cur.Done()
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			return
		}
		switch {
		case s.expected == 0:
			s.noteExit(cur, "exited on its own")
			s.f.t.Logf("%s exited on its own with code %d; restarting it; last line: %s", s.name, cur.ExitCode(),
				strings.TrimSpace(testcontainers.LastLines(cur.Log(), 1)))
		case s.expected == syscall.SIGTERM && cur.ExitCode() != 0:
			s.noteExit(cur, "exited after SIGTERM, not with 0")
			s.f.t.Logf("%s exited %d after SIGTERM, not 0; restarting it", s.name, cur.ExitCode())
		}
		s.expected = 0
		in, err := s.f.launch(s.name, s.env)
		if err != nil {
			s.mu.Unlock()
			s.f.t.Errorf("restart %s: %v", s.name, err)
			return
		}
		s.cur = in
		s.mu.Unlock()
	}
}

// signal sends sig to the current instance; the supervisor restarts it when it exits.
func (s *supervised) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		s.expected = sig
	}
	return s.cur.Signal(sig)
}

// abandon ends supervision without waiting for the instance: the fixture's cleanup kills it.
func (s *supervised) abandon() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
}

// stop ends supervision with SIGTERM and returns how many exits nobody caused. An instance that was already
// failing (a fatal error logged, exit 1 under way) counts as one of those; one that ignores SIGTERM fails the test.
func (s *supervised) stop(t *testing.T) int {
	s.mu.Lock()
	s.stopping = true
	cur := s.cur
	s.mu.Unlock()
	code, err := cur.Stop(45 * time.Second)
	if err != nil {
		t.Errorf("stop %s: %v", s.name, err)
	}
	<-s.done
	if err == nil && code != 0 {
		t.Logf("%s exited %d at the end instead of 0: %s", s.name, code, testcontainers.LastLines(cur.Log(), 1))
		s.noteExit(cur, "exited at the final SIGTERM, not with 0")
	}
	return s.exits
}

func bounceBroker(hard bool) func(context.Context, *chaosRun, int) (string, error) {
	return func(ctx context.Context, run *chaosRun, k int) (string, error) {
		c := run.f.cluster
		id := (k-1)%len(c.BrokerIDs()) + 1
		how := "clean stop"
		var err error
		if hard {
			how = "SIGKILL"
			err = c.KillBroker(ctx, id)
		} else {
			err = c.StopBroker(ctx, id)
		}
		if err != nil {
			return "", err
		}
		if err := c.StartBroker(ctx, id); err != nil {
			return "", err
		}
		return fmt.Sprintf("broker %d: %s and restart", id, how), nil
	}
}

func bounceProcessor(sig syscall.Signal) func(context.Context, *chaosRun, int) (string, error) {
	return func(_ context.Context, run *chaosRun, k int) (string, error) {
		p := run.procs[(k-1)%len(run.procs)]
		if err := p.signal(sig); err != nil {
			return "", err
		}
		return fmt.Sprintf("processor %s: %s, restarted by the supervisor", p.name, sig), nil
	}
}

// cutOffLeader disconnects the leader of input partition 0 from the cluster network until another broker leads
// the partition and the processors made progress without it, then reconnects it and waits for it to rejoin the ISR.
func cutOffLeader(ctx context.Context, run *chaosRun, _ int) (string, error) {
	f := run.f
	before, err := f.cluster.Partition(ctx, f.input, 0)
	if err != nil {
		return "", err
	}
	leader := before.Leader
	if err := f.cluster.DisconnectBroker(ctx, leader); err != nil {
		return "", err
	}
	err = testcontainers.WaitFor(ctx, "a new leader of "+f.input+"[0]", func(ctx context.Context) (bool, error) {
		p, err := f.cluster.Partition(ctx, f.input, 0)
		return err == nil && p.Leader >= 0 && p.Leader != leader, err
	})
	if err != nil {
		return "", err
	}
	if err := f.cluster.ReconnectBroker(ctx, leader); err != nil {
		return "", err
	}
	err = testcontainers.WaitFor(ctx, fmt.Sprintf("broker %d back in the ISR", leader), func(ctx context.Context) (bool, error) {
		p, err := f.cluster.Partition(ctx, f.input, 0)
		return err == nil && len(p.ISR) == 3, err
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("broker %d (leader of %s[0]) cut off until a new leader took over, then reconnected", leader, f.input), nil
}

// secondInput adds a second input topic with as many records as the first, routed to an output of its own so that
// the verdict covers the first input alone.
func secondInput(ctx context.Context, f *fixture, n int) (map[string]string, error) {
	other, otherOut := f.input+"-b", f.output+"-b"
	for _, topic := range []string{other, otherOut} {
		if err := f.cluster.CreateTopic(ctx, topic, 2, 0, nil); err != nil {
			return nil, err
		}
	}
	p, err := kafkatest.NewProducer(ctx, f.cluster.BootstrapServers(), "")
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if err := p.Send(ctx, kafkatest.Records(other, 2, 0, n, 100), true); err != nil {
		return nil, err
	}
	return map[string]string{
		"PROCESSOR_INPUT_TOPICS": f.input + "," + other,
		"PROCESSOR_ROUTE":        fmt.Sprintf("topic == %q ? %q : %q", other, otherOut, f.output),
		"PROCESSOR_ROUTE_TOPICS": otherOut,
	}, nil
}

// deleteSecondInput deletes the input topic secondInput added, while batches of both inputs are in flight: the
// first input's records must all still be processed exactly once, and no processor may exit.
func deleteSecondInput(ctx context.Context, run *chaosRun, _ int) (string, error) {
	other := run.f.input + "-b"
	if err := run.f.cluster.DeleteTopic(ctx, other); err != nil {
		return "", err
	}
	return "input topic " + other + " deleted", nil
}

// addInputPartitions grows the input topic from partitions to partitions+2 and writes extra records to the new
// partitions only. With de-duplication on, the processor that gets a new partition must grow its changelog and
// produce to a changelog partition its producer has not seen yet: that was an exit 1.
func addInputPartitions(partitions, extra int) func(context.Context, *chaosRun, int) (string, error) {
	return func(ctx context.Context, run *chaosRun, _ int) (string, error) {
		f := run.f
		if err := f.cluster.AddPartitions(ctx, f.input, partitions+2); err != nil {
			return "", err
		}
		// Keys continue far after the first records', so that de-duplication keeps every one.
		f.produce(ctx, partitions+2, 1_000_000, extra, func(i int, m *kafka.Message) {
			m.TopicPartition.Partition = int32(partitions + i%2)
		})
		return fmt.Sprintf("input grown from %d to %d partitions, %d records written to the new ones", partitions, partitions+2, extra), nil
	}
}

// killCoordinator waits for processor 0 to stop itself inside its 3rd transaction, where its records are
// produced and its offsets not yet sent, SIGKILLs the broker coordinating the group, lets the processor go on
// (so it sends its offsets to a coordinator that is gone), keeps the broker down 15 s and starts it again. The
// controller moves the broker's partitions after its 6 s session timeout and the new coordinator loads the group:
// the offsets must wait for it, within the transaction timeout, rather than abort the transaction.
func killCoordinator(ctx context.Context, run *chaosRun, _ int) (string, error) {
	p := run.procs[0]
	if err := p.waitStopped(ctx); err != nil {
		return "", err
	}
	c := run.f.cluster
	id, err := c.GroupCoordinator(ctx, run.f.group)
	if err != nil {
		return "", err
	}
	if err := c.KillBroker(ctx, id); err != nil {
		return "", err
	}
	killed := time.Now()
	if err := p.signal(syscall.SIGCONT); err != nil {
		return "", err
	}
	// The length of the outage is the fault itself, not a wait for a condition.
	time.Sleep(15*time.Second - time.Since(killed))
	if err := c.StartBroker(ctx, id); err != nil {
		return "", err
	}
	return fmt.Sprintf("broker %d (coordinator of group %s): SIGKILL as %s was about to send offsets, down 15 s, restarted",
		id, run.f.group, p.name), nil
}

// freezePastTimeout stops a processor with SIGSTOP for longer than its transaction timeout (8 s), so the broker
// aborts its open transaction and the group hands its partitions to the other processor, then thaws it.
func freezePastTimeout(_ context.Context, run *chaosRun, _ int) (string, error) {
	p := run.procs[0]
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return "", err
	}
	// The length of the freeze is the fault itself, not a wait for a condition: it must outlast the timeout.
	time.Sleep(12 * time.Second)
	if err := p.signal(syscall.SIGCONT); err != nil {
		return "", err
	}
	return fmt.Sprintf("processor %s: SIGSTOP for 12 s (transaction timeout 8 s), then SIGCONT", p.name), nil
}

// thawStoppedInTransaction waits until processor 0 has stopped itself inside a transaction (its outputs written,
// its offsets not yet sent: PROCESSOR_TEST_STOP_IN_TRANSACTION), leaves it stopped past its transaction timeout
// so the broker aborts that transaction and the group hands its partitions over, then lets it go on.
func thawStoppedInTransaction(ctx context.Context, run *chaosRun, _ int) (string, error) {
	p := run.procs[0]
	if err := p.waitStopped(ctx); err != nil {
		return "", err
	}
	// As in freezePastTimeout, the length of the stop is the fault itself.
	time.Sleep(12 * time.Second)
	if err := p.signal(syscall.SIGCONT); err != nil {
		return "", err
	}
	return fmt.Sprintf("processor %s: stopped itself in its 3rd transaction, SIGCONT 12 s later (transaction timeout 8 s)", p.name), nil
}

// waitStopped waits until the current process has stopped itself (PROCESSOR_TEST_STOP_IN_TRANSACTION).
func (s *supervised) waitStopped(ctx context.Context) error {
	s.mu.Lock()
	cur := s.cur
	s.mu.Unlock()
	return testcontainers.WaitFor(ctx, s.name+" stopped inside a transaction", func(context.Context) (bool, error) {
		return cur.Stopped(), nil
	})
}

// waitReadyOrStopped waits until the processor answers /readyz (it has joined its group with partitions), or has
// already stopped itself inside a transaction, whose /readyz would never answer.
func (s *supervised) waitReadyOrStopped(ctx context.Context) error {
	s.mu.Lock()
	cur := s.cur
	s.mu.Unlock()
	return testcontainers.WaitFor(ctx, s.name+" ready", func(ctx context.Context) (bool, error) {
		if cur.Stopped() {
			return true, nil
		}
		ask, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return cur.Ready(ask), nil
	})
}

// outputWatcher reads the output with read_committed while the faults happen.
type outputWatcher struct {
	final chan map[string]bool
	done  chan outputSeen
}

type outputSeen struct {
	positions  map[string]bool // "partition@offset"
	duplicates int             // sources seen more than once
}

func watchOutput(f *fixture) *outputWatcher {
	w := &outputWatcher{final: make(chan map[string]bool, 1), done: make(chan outputSeen, 1)}
	go func() {
		seen := outputSeen{positions: map[string]bool{}}
		defer func() { w.done <- seen }()
		sources := map[string]bool{}
		c, err := kafka.NewConsumer(&kafka.ConfigMap{
			"bootstrap.servers": f.cluster.BootstrapServers(), "group.id": f.group + "-watcher",
			"isolation.level": "read_committed", "auto.offset.reset": "earliest", "enable.auto.commit": false,
			"log_level": 0,
		})
		if err != nil {
			f.t.Errorf("output watcher: %v", err)
			return
		}
		defer c.Close()
		if err := c.Subscribe(f.output, nil); err != nil {
			f.t.Errorf("output watcher: %v", err)
			return
		}
		// Once told what the final reader saw, read on until all of it is seen too, for at most a minute: what
		// is still missing then is reported as a difference between the two readers.
		var final map[string]bool
		var deadline time.Time
		inFinal := 0
		for final == nil || (inFinal < len(final) && time.Now().Before(deadline)) {
			select {
			case final = <-w.final:
				deadline = time.Now().Add(time.Minute)
				inFinal = 0
				for pos := range seen.positions {
					if final[pos] {
						inFinal++
					}
				}
			default:
			}
			m, ok := c.Poll(100).(*kafka.Message)
			if !ok || m.TopicPartition.Error != nil {
				continue
			}
			pos := fmt.Sprintf("%d@%d", m.TopicPartition.Partition, m.TopicPartition.Offset)
			if seen.positions[pos] {
				continue // read again after the watcher's own rebalance; not a second record
			}
			seen.positions[pos] = true
			if final[pos] {
				inFinal++
			}
			src := headerOf(m, stream.SourceHeader)
			if sources[src] {
				seen.duplicates++
			}
			sources[src] = true
		}
	}()
	return w
}

// stop hands the watcher the final reader's positions and returns what it saw.
func (w *outputWatcher) stop(final map[string]bool) outputSeen {
	w.final <- final
	return <-w.done
}

// outputPositions are the positions of every record a read_committed reader sees in the output after the run.
func outputPositions(ctx context.Context, f *fixture) (map[string]bool, error) {
	out, err := kafkatest.ReadCommitted(ctx, f.cluster.BootstrapServers(), f.output)
	if err != nil {
		return nil, err
	}
	pos := map[string]bool{}
	for p, msgs := range out {
		for _, m := range msgs {
			pos[fmt.Sprintf("%d@%d", p, m.TopicPartition.Offset)] = true
		}
	}
	return pos, nil
}

// abortsLogged counts the transactions the processors aborted, from their logs (counters restart with them).
func abortsLogged(f *fixture) int { return len(abortTimes(f)) }

// abortTimes are the times of the transactions the processors aborted, from their logs.
func abortTimes(f *fixture) []time.Time {
	var at []time.Time
	entries, _ := os.ReadDir(f.logDir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(f.logDir, e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, `"msg":"transaction aborted`) {
				continue
			}
			if i := strings.Index(line, `"time":"`); i >= 0 {
				if ts, err := time.Parse(time.RFC3339Nano, line[i+8:i+8+strings.IndexByte(line[i+8:], '"')]); err == nil {
					at = append(at, ts)
				}
			}
		}
	}
	return at
}

func chaosTable(results []chaosResult, image string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| scenario | records | duplicates | lost | aborted visible | aborted transactions | faults injected | unexpected exits | duration | verdict |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range results {
		verdict := "pass"
		if !r.ok {
			verdict = "FAIL"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %d | %s | %s |\n", r.scenario, r.records, r.duplicates,
			r.lost, r.visibleAborted, r.aborted, r.faults, r.unexpectedExits, r.duration.Round(100*time.Millisecond), verdict)
	}
	for _, r := range results {
		if !r.ok {
			fmt.Fprintf(&b, "\nFAILED %s: %s\n", r.scenario, r.verdict)
		}
	}
	fmt.Fprintf(&b, "\n3 brokers (%s), replication 3, min.insync.replicas 2; input 2 partitions, output 3 (single-partition row: 1 and 1); 2 processors (1 in the single-partition row).\n", image)
	return b.String()
}

func writeChaosReport(path, table string, records int) error {
	text := fmt.Sprintf("# Fault-injection results\n\nLast `make chaos` run (%s, %d records per scenario), written by e2e/chaos_test.go.\n"+
		"Columns: duplicates and lost from the final read_committed reader (plus duplicates the reader saw during the "+
		"faults); aborted visible: records a read_committed reader saw during the faults that the final reader does not "+
		"see; aborted transactions: from the processors' logs; unexpected exits: processor exits the test did not cause "+
		"(the supervisor restarted them).\n\n%s", time.Now().UTC().Format("2006-01-02"), records, table)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return fmt.Errorf("write chaos report: %w", err)
	}
	return nil
}
