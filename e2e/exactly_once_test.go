package e2e

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/consume"
	"github.com/eosproc/eosproc/internal/kafkatest"
	"github.com/eosproc/eosproc/internal/procrun"
	"github.com/eosproc/eosproc/internal/verify"
	"github.com/eosproc/eosproc/stream"
	"github.com/eosproc/eosproc/testcontainers"
	"github.com/eosproc/eosproc/txn"
)

// With default settings, a backlog is copied exactly once, and its batches grow beyond the size a batch closes at
// while the input keeps up (consume.DefaultBatchRecords), never beyond the default maximum.
func TestCopiesEveryRecordExactlyOnce(t *testing.T) {
	f := newFixture(t, fixtureOptions{inputPartitions: 6, outputPartitions: 6})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	const n = 200_000
	f.produce(ctx, 6, 0, n, nil)
	started := time.Now()
	proc := f.start("p0", map[string]string{"PROCESSOR_LOG_LEVEL": "debug"})
	f.waitCaughtUp(ctx)
	t.Logf("%d records copied in %s", n, time.Since(started).Round(100*time.Millisecond))
	f.stopAll()

	r := f.verdict(ctx, true)
	if !r.OK() || r.Inputs != n || r.DeadLettered != 0 {
		t.Fatalf("want %d inputs each exactly once, none dead-lettered: %s", n, r)
	}
	batches, err := committedBatches(proc.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, b := range batches {
		sizes = append(sizes, b.Records)
	}
	t.Logf("batch sizes: %v", sizes)
	if largest := slices.Max(sizes); largest <= consume.DefaultBatchRecords || largest > consume.DefaultMaxBatchRecords {
		t.Errorf("largest batch %d records: want a backlog's batches grown beyond %d, to at most %d",
			largest, consume.DefaultBatchRecords, consume.DefaultMaxBatchRecords)
	}
}

// killRestartRun copies n records while SIGKILLing and restarting the processor kills times, each at a random
// point of the run, and returns the verdict.
func killRestartRun(t *testing.T, guarantee string, kills int) verify.Report {
	f := newFixture(t, fixtureOptions{inputPartitions: 6, outputPartitions: 6})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	const n = 100_000
	f.produce(ctx, 6, 0, n, nil)
	extra := map[string]string{
		"PROCESSOR_PROCESSING_GUARANTEE": guarantee,
		// Small batches: many transactions per second, so a kill lands inside an open one most of the time.
		"PROCESSOR_MAX_BATCH_RECORDS": "2000",
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	in := f.start("p0", extra)
	for k := range kills {
		// Kill at a random point between the k-th and (k+1)-th of kills+1 equal shares of the work, so the
		// kills spread over the whole run; the random offset inside the share makes each moment different.
		share := int64(n / (kills + 1))
		target := int64(n) - share*int64(k) - rng.Int64N(share)
		f.waitProgress(ctx, target)
		if err := in.Kill(); err != nil {
			t.Fatal(err)
		}
		t.Logf("kill %d: SIGKILL at lag <= %d", k+1, target)
		in = f.start("p0", extra)
	}
	f.waitCaughtUp(ctx)
	f.stopAll()
	return f.verdict(ctx, true)
}

func TestKillMidTransactionLeavesNoDuplicates(t *testing.T) {
	r := killRestartRun(t, "exactly_once", 5)
	if !r.OK() {
		t.Fatalf("exactly_once after 5 SIGKILLs: %s", r)
	}
}

// TestAtLeastOnceKillsDuplicate shows the verdict of the test above can fail: the same kills without
// transactions leave duplicates.
func TestAtLeastOnceKillsDuplicate(t *testing.T) {
	f := newFixture(t, fixtureOptions{inputPartitions: 6, outputPartitions: 6})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const n, kills = 30_000, 3
	f.produce(ctx, 6, 0, n, nil)
	// Each incarnation stops itself in its 3rd batch, after the outputs were delivered and before the offsets were
	// committed, and is SIGKILLed there: the window at_least_once leaves open, hit every time rather than by
	// chance (random kills found no duplicate in one make test run).
	extra := map[string]string{"PROCESSOR_PROCESSING_GUARANTEE": "at_least_once", "PROCESSOR_MAX_BATCH_RECORDS": "2000"}
	stopping := maps.Clone(extra)
	stopping["PROCESSOR_TEST_STOP_IN_TRANSACTION"] = "3"
	for k := range kills {
		in := f.start("p0", stopping)
		err := testcontainers.WaitFor(ctx, "p0 stopped between delivery and commit", func(context.Context) (bool, error) {
			return in.Stopped(), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := in.Kill(); err != nil {
			t.Fatal(err)
		}
		t.Logf("kill %d: SIGKILL between delivery and commit", k+1)
	}
	f.start("p0", extra)
	f.waitCaughtUp(ctx)
	f.stopAll()
	r := f.verdict(ctx, true)
	if r.Duplicates == 0 || r.Missing != 0 || r.Inputs != n {
		t.Fatalf("at_least_once after %d kills between delivery and commit: want duplicates and nothing missing: %s", kills, r)
	}
	t.Logf("at_least_once: %d duplicates after %d kills, nothing lost", r.Duplicates, kills)
}

// TestReplicasRebalanceExactlyOnce runs three replicas and kills one repeatedly. Each kill costs two rebalances:
// the survivors take the dead replica's partitions once its session expires (its open transaction still pending,
// so they must wait for it to be aborted before reading its offsets), and give some back when it restarts.
func TestReplicasRebalanceExactlyOnce(t *testing.T) {
	f := newFixture(t, fixtureOptions{inputPartitions: 6, outputPartitions: 6})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	const n = 100_000
	f.produce(ctx, 6, 0, n, nil)
	// A slow transform keeps the backlog alive through three kills, takeovers and restarts.
	extra := map[string]string{"PROCESSOR_MAX_BATCH_RECORDS": "1000", "PROCESSOR_TEST_COST_PER_RECORD": "150us"}
	survivors := []*procrun.Instance{f.start("r0", extra), f.start("r1", extra)}
	victim := f.start("r2", extra)
	for k, lag := range []int64{85_000, 60_000, 35_000} {
		f.waitProgress(ctx, lag)
		if err := victim.Kill(); err != nil {
			t.Fatal(err)
		}
		err := testcontainers.WaitFor(ctx, "the survivors to own all 6 partitions", func(ctx context.Context) (bool, error) {
			return assignedPartitions(ctx, survivors) == 6, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("kill %d of replica r2 at lag <= %d; survivors took over its partitions", k+1, lag)
		victim = f.start("r2", extra)
	}
	f.waitCaughtUp(ctx)
	f.stopAll()
	if r := f.verdict(ctx, true); !r.OK() {
		t.Fatalf("3 replicas, one killed 3 times: %s", r)
	}
}

// assignedPartitions adds the eosproc_assigned_partitions gauges of instances (an unreachable one counts 0).
func assignedPartitions(ctx context.Context, instances []*procrun.Instance) float64 {
	var sum float64
	for _, in := range instances {
		if v, err := in.Metric(ctx, "eosproc_assigned_partitions"); err == nil {
			sum += v
		}
	}
	return sum
}

// TestZombieWritesStayInvisible freezes a replica inside a transaction (its outputs written, its offsets not yet
// sent) beyond its session timeout, so the group gives its partitions to the other replica, then thaws it:
// whatever the zombie then tries to commit must be fenced by the group generation (KIP-447), so nothing it
// writes becomes visible, and it exits on the fencing error or rejoins.
func TestZombieWritesStayInvisible(t *testing.T) {
	f := newFixture(t, fixtureOptions{inputPartitions: 6, outputPartitions: 6})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	// The freeze comes from the zombie itself, in its 3rd transaction, rather than from a signal sent while a
	// backlog is believed to last: the run once drained its whole input before the signal arrived, and there was
	// nothing left to fence.
	extra := map[string]string{"PROCESSOR_MAX_BATCH_RECORDS": "500"}
	freezing := maps.Clone(extra)
	freezing["PROCESSOR_TEST_STOP_IN_TRANSACTION"] = "3"
	survivor := f.start("z0", extra)
	zombie := f.start("z1", freezing)
	// Both own their share before there is any input, so the zombie's transactions carry records.
	err := testcontainers.WaitFor(ctx, "z0 and z1 with 3 partitions each", func(ctx context.Context) (bool, error) {
		a, errA := survivor.Metric(ctx, "eosproc_assigned_partitions")
		b, errB := zombie.Metric(ctx, "eosproc_assigned_partitions")
		return errA == nil && errB == nil && a == 3 && b == 3, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	const n = 60_000
	f.produce(ctx, 6, 0, n, nil)
	err = testcontainers.WaitFor(ctx, "z1 stopped inside its 3rd transaction", func(context.Context) (bool, error) {
		return zombie.Stopped(), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("z1 frozen inside its 3rd transaction")
	// The survivor owns all partitions once z1's session (6 s) has expired, and commits them all while z1 is
	// frozen with its transaction open (the transaction timeout, 20 s, is longer).
	err = testcontainers.WaitFor(ctx, "z0 with all 6 partitions", func(ctx context.Context) (bool, error) {
		got, err := survivor.Metric(ctx, "eosproc_assigned_partitions")
		return err == nil && got == 6, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.waitCaughtUp(ctx)
	if err := zombie.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Log("z1 thawed (SIGCONT)")
	f.waitCaughtUp(ctx)
	f.stopAll()
	if r := f.verdict(ctx, true); !r.OK() || r.Inputs != n {
		t.Fatalf("zombie replica: want %d inputs exactly once: %s", n, r)
	}
	code := zombie.ExitCode()
	if code != 0 && code != 1 {
		t.Fatalf("zombie exited %d, want 0 (rejoined, then stopped) or 1 (fenced)", code)
	}
	t.Logf("zombie exited %d", code)
}

func TestAddedPartitionsAreProcessedFromTheStart(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
	}{
		{"plain", nil},
		// De-duplication grows its changelog topic with the input, and writes to the new changelog partitions
		// before the producer's metadata knows them: that was a fatal error (exit 1).
		{"with de-duplication", map[string]string{"PROCESSOR_DEDUPE_IDENTITY": "key"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{inputPartitions: 3, outputPartitions: 3})
			ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
			defer cancel()

			f.produce(ctx, 3, 0, 9_000, nil)
			proc := f.start("p0", tt.env)
			f.waitCaughtUp(ctx)
			// Grow the topic and write into the new partitions at once, before the processor's metadata refresh
			// can have noticed them: with auto.offset.reset=earliest none of these records may be skipped.
			if err := f.cluster.AddPartitions(ctx, f.input, 6); err != nil {
				t.Fatal(err)
			}
			f.produce(ctx, 6, 9_000, 12_000, nil)
			f.waitCaughtUp(ctx)
			assigned, err := proc.Metric(ctx, "eosproc_assigned_partitions")
			if err != nil {
				t.Fatal(err)
			}
			if assigned != 6 {
				t.Errorf("eosproc_assigned_partitions = %v after the topic grew to 6 partitions, want 6", assigned)
			}
			f.stopAll() // fails the test unless the processor is still running and exits 0
			r := f.verdict(ctx, true)
			if !r.OK() || r.Inputs != 21_000 {
				t.Fatalf("added partitions: want 21000 inputs exactly once: %s", r)
			}
		})
	}
}

func TestFailedRecordsGoToDeadLetterTopic(t *testing.T) {
	f := newFixture(t, fixtureOptions{inputPartitions: 3, outputPartitions: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	const n, poisonEvery = 20_000, 97
	poisoned := 0
	f.produce(ctx, 3, 0, n, func(i int, m *kafka.Message) {
		if i%poisonEvery == 0 {
			m.Headers = append(m.Headers, kafka.Header{Key: "poison", Value: []byte("yes")})
			poisoned++
		}
	})
	started := time.Now()
	p0 := f.start("p0", map[string]string{"PROCESSOR_TEST_FAIL_HEADER": "poison"})
	f.waitCaughtUp(ctx)
	// Counted as each transaction commits, an instant after its offsets are visible.
	err := testcontainers.WaitFor(ctx, "the dead-letter counter to count every poisoned record", func(ctx context.Context) (bool, error) {
		v, err := p0.Metric(ctx, "eosproc_dead_letters_total")
		return err == nil && v == float64(poisoned), err
	})
	if err != nil {
		t.Fatal(err)
	}
	// librdkafka's statistics reach the client metrics from both clients: the consumer's are served inside its
	// batch calls, the producer's by its poll goroutine.
	clientSeries := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^eosproc_kafka_request_rtt_seconds\{broker="[^"]+",client="consumer",quantile="0.99"\} `),
		regexp.MustCompile(`(?m)^eosproc_kafka_request_rtt_seconds\{broker="[^"]+",client="producer",quantile="0.99"\} `),
		regexp.MustCompile(`(?m)^eosproc_kafka_transaction_state\{state="(Ready|InTransaction|BeginCommit|CommittingTransaction)"\} [12]$`),
	}
	err = testcontainers.WaitFor(ctx, "client metrics from both clients' statistics", func(ctx context.Context) (bool, error) {
		text, err := p0.Metrics(ctx)
		return err == nil && !slices.ContainsFunc(clientSeries, func(re *regexp.Regexp) bool { return !re.MatchString(text) }), err
	})
	if err != nil {
		t.Fatal(err)
	}
	checkDashboardAgainst(ctx, t, p0)
	f.stopAll()

	r := f.verdict(ctx, true)
	if !r.OK() || r.DeadLettered != poisoned {
		t.Fatalf("want %d inputs exactly once, %d of them dead-lettered: %s", n, poisoned, r)
	}
	dead, err := kafkatest.ReadCommitted(ctx, f.cluster.BootstrapServers(), f.dlq)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range dead[0] {
		headers := map[string]string{}
		for _, h := range m.Headers {
			headers[h.Key] = string(h.Value)
		}
		if headers["poison"] != "yes" {
			t.Fatalf("dead letter %s without the poison header: a good record was dead-lettered", m.Key)
		}
		if !strings.Contains(headers[txn.HeaderError], "poison") || headers[txn.HeaderSourceTopic] != f.input ||
			headers[txn.HeaderSourcePartition] == "" || headers[txn.HeaderSourceOffset] == "" {
			t.Fatalf("dead letter %s lacks its reason or source headers: %v", m.Key, headers)
		}
		if headers[txn.HeaderErrorStage] != txn.StageTransform || headers[txn.HeaderErrorClass] != txn.ClassError ||
			headers[txn.HeaderAppID] != "e2e" || headers[txn.HeaderInstanceID] != "p0" {
			t.Fatalf("dead letter %s: want stage %s, class %s, app id e2e and instance p0 in its headers: %v", m.Key,
				txn.StageTransform, txn.ClassError, headers)
		}
		at, err := time.Parse(time.RFC3339Nano, headers[txn.HeaderErrorTime])
		if err != nil || at.Before(started.Truncate(time.Millisecond)) || at.After(time.Now()) {
			t.Fatalf("dead letter %s: %s %q is not a time while the processor ran (%v)", m.Key, txn.HeaderErrorTime, headers[txn.HeaderErrorTime], err)
		}
	}
	t.Logf("%d of %d records dead-lettered with reason, e.g. %q", poisoned, n, headerOf(dead[0][0], txn.HeaderError))
}

// TestDeadLettersAreRedrivenExactlyOnce runs docs/runbook.md's re-drive recipe: after a fix, a second processor
// writes the dead letters of before the fix back to their input topic, and the fixed processor's output holds
// every record exactly once; a record that still fails after the fix stays in the dead-letter topic instead of
// going round for ever.
func TestDeadLettersAreRedrivenExactlyOnce(t *testing.T) {
	f := newFixture(t, fixtureOptions{inputPartitions: 3, outputPartitions: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const redriveDLQ = "redrive-dlq"
	if err := f.cluster.CreateTopic(ctx, redriveDLQ, 1, 0, nil); err != nil {
		t.Fatal(err)
	}

	// The processor with the bug fails on the records with a poison header.
	const n, more, stillBad = 3_000, 100, 3_050
	poisoned := 0
	f.produce(ctx, 3, 0, n, func(i int, m *kafka.Message) {
		if i%10 == 0 {
			m.Headers = append(m.Headers, kafka.Header{Key: "poison", Value: []byte("yes")})
			poisoned++
		}
	})
	f.start("p0", map[string]string{"PROCESSOR_TEST_FAIL_HEADER": "poison"})
	f.waitCaughtUp(ctx)
	f.stopAll()

	// The fix: poison passes; one record of the next ones fails for another reason after the fix.
	fixedAt := time.Now().UTC().Format(txn.ErrorTimeLayout)
	f.produce(ctx, 3, n, more, func(i int, m *kafka.Message) {
		if i == stillBad {
			m.Headers = append(m.Headers, kafka.Header{Key: "broken", Value: []byte("yes")})
		}
	})
	f.start("p0", map[string]string{"PROCESSOR_TEST_FAIL_HEADER": "broken"})
	f.waitCaughtUp(ctx)

	// The re-drive, configured as the runbook says.
	const redriveGroup = "e2e-redrive"
	r0 := f.start("r0", map[string]string{
		"PROCESSOR_APP_ID": redriveGroup, "PROCESSOR_GROUP_ID": redriveGroup, "PROCESSOR_INPUT_TOPICS": f.dlq,
		"PROCESSOR_OUTPUT_TOPIC": f.input, "PROCESSOR_DEAD_LETTER_TOPIC": redriveDLQ,
		"PROCESSOR_ROUTE":        `headers["eosproc.source.topic"]`,
		"PROCESSOR_ROUTE_TOPICS": f.input,
		"PROCESSOR_FILTER":       fmt.Sprintf(`headers["eosproc.error.time"] < %q && headers["eosproc.error.stage"] == "transform"`, fixedAt),
		"PROCESSOR_HEADERS_DROP": "eosproc.error,eosproc.error.stage,eosproc.error.class,eosproc.error.time,eosproc.app.id," +
			"eosproc.instance.id,eosproc.source.topic,eosproc.source.partition,eosproc.source.offset",
	})
	f.waitCommittedPastRecords(ctx, redriveGroup, f.dlq)
	f.waitCommittedPastRecords(ctx, f.group, f.input) // the re-driven records, written in the re-drive's transactions
	f.stopAll()
	if strings.Contains(r0.Log(), "could not read the output topics' max.message.bytes") {
		t.Errorf("the re-drive, whose route topics list its output topic, could not read the topics' limits")
	}

	in, err := kafkatest.ReadCommitted(ctx, f.cluster.BootstrapServers(), f.input)
	if err != nil {
		t.Fatal(err)
	}
	inputs, redriven := 0, 0
	for _, msgs := range in {
		for _, m := range msgs {
			inputs++
			if headerOf(m, stream.SourceHeader) == "" {
				continue // written by the test
			}
			redriven++
			if headerOf(m, "poison") != "yes" || headerOf(m, txn.HeaderError) != "" || headerOf(m, txn.HeaderSourceTopic) != "" {
				t.Fatalf("re-driven record %s: want its original headers (poison) and none of the dead letter's: %v", m.Key, m.Headers)
			}
		}
	}
	if redriven != poisoned || inputs != n+more+poisoned {
		t.Fatalf("input topic holds %d records, %d of them re-driven; want the %d written and the %d dead letters of before the fix",
			inputs, redriven, n+more, poisoned)
	}
	out, err := kafkatest.ReadCommitted(ctx, f.cluster.BootstrapServers(), f.output)
	if err != nil {
		t.Fatal(err)
	}
	perKey := map[string]int{}
	for _, msgs := range out {
		for _, m := range msgs {
			perKey[string(m.Key)]++
			if want := kafkatest.Records(f.input, 1, keyIndex(t, m.Key), 1, 100)[0].Value; string(m.Value) != string(want) {
				t.Fatalf("output %s has value %q, want the input's", m.Key, m.Value)
			}
		}
	}
	for i := range n + more {
		want := 1
		if i == stillBad {
			want = 0
		}
		if got := perKey[fmt.Sprintf("key-%d", i)]; got != want {
			t.Fatalf("record %d is in the output %d times, want %d", i, got, want)
		}
	}
	if dead, err := kafkatest.ReadCommitted(ctx, f.cluster.BootstrapServers(), f.dlq); err != nil || len(dead[0]) != poisoned+1 {
		t.Fatalf("dead-letter topic holds %d records (%v), want the %d of before the fix and the one after: the re-drive sent one round", len(dead[0]), err, poisoned)
	}
	t.Logf("%d dead letters re-driven; every one of %d records in the output once, but the one failing after the fix", poisoned, n+more)
}

// checkDashboardAgainst checks that the running processor serves a series of every metric the dashboard
// queries (de-duplication's only when it is configured, which it is not here).
func checkDashboardAgainst(ctx context.Context, t *testing.T, p *procrun.Instance) {
	t.Helper()
	dashboard, err := os.ReadFile("../deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	text, err := p.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`eosproc_[a-z_]+`).FindAllString(string(dashboard), -1)
	for _, name := range names {
		name = strings.TrimSuffix(name, "_bucket")
		if !strings.HasPrefix(name, "eosproc_dedupe_") && !strings.Contains(text, "\n# TYPE "+name+" ") {
			t.Errorf("the dashboard queries %s, which the running processor does not serve", name)
		}
	}
	if len(names) < 20 {
		t.Fatalf("found only %d metric names in the dashboard", len(names))
	}
}

// keyIndex is i of a test record's key "key-<i>".
func keyIndex(t *testing.T, key []byte) int {
	t.Helper()
	i, err := strconv.Atoi(strings.TrimPrefix(string(key), "key-"))
	if err != nil {
		t.Fatalf("key %q is not a test record's", key)
	}
	return i
}

// TestErrorsToleranceNoneStopsBeforeTheBadBatch: with PROCESSOR_ERRORS_TOLERANCE=none the first record the
// transform fails on stops the processor (exit 1, the record named) and its batch is never committed: the group's
// offsets stop before the record, and the output holds exactly the records below the committed offsets.
func TestErrorsToleranceNoneStopsBeforeTheBadBatch(t *testing.T) {
	f := newFixture(t, fixtureOptions{inputPartitions: 3, outputPartitions: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	const n, bad = 6_000, 3_001 // record 3001: partition 1, offset 1000
	badPartition, badOffset := int32(bad%3), int64(bad/3)
	f.produce(ctx, 3, 0, n, func(i int, m *kafka.Message) {
		if i == bad {
			m.Headers = append(m.Headers, kafka.Header{Key: "poison", Value: []byte("yes")})
		}
	})
	p0 := f.start("p0", map[string]string{"PROCESSOR_TEST_FAIL_HEADER": "poison", "PROCESSOR_ERRORS_TOLERANCE": "none",
		"PROCESSOR_MAX_BATCH_RECORDS": "500"})
	select {
	case <-p0.Done():
	case <-ctx.Done():
		t.Fatal("the processor did not stop at the bad record")
	}
	source := fmt.Sprintf("%s/%d/%d", f.input, badPartition, badOffset)
	if code := p0.ExitCode(); code != 1 || !strings.Contains(p0.Log(), source) || !strings.Contains(p0.Log(), "PROCESSOR_ERRORS_TOLERANCE") {
		t.Fatalf("exit code %d; want 1 and a log naming the record %s and PROCESSOR_ERRORS_TOLERANCE", code, source)
	}

	committed, err := kafkatest.Committed(ctx, f.cluster.BootstrapServers(), f.group, f.input)
	if err != nil {
		t.Fatal(err)
	}
	if committed[badPartition] > badOffset {
		t.Fatalf("committed offsets %v: partition %d is past the bad record's offset %d", committed, badPartition, badOffset)
	}
	out, err := kafkatest.ReadCommitted(ctx, f.cluster.BootstrapServers(), f.output)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, msgs := range out {
		for _, m := range msgs {
			seen[headerOf(m, stream.SourceHeader)]++
		}
	}
	want := 0
	for p := range int32(3) {
		for off := range max(committed[p], 0) {
			want++
			if src := fmt.Sprintf("%s/%d/%d", f.input, p, off); seen[src] != 1 {
				t.Fatalf("input %s is below the committed offset %d but is in the output %d times", src, committed[p], seen[src])
			}
		}
	}
	if len(seen) != want || want == 0 {
		t.Fatalf("output holds %d sources, want exactly the %d inputs below the committed offsets %v (and some)", len(seen), want, committed)
	}
	if dead, err := kafkatest.ReadCommitted(ctx, f.cluster.BootstrapServers(), f.dlq); err != nil || len(dead[0]) != 0 {
		t.Fatalf("dead-letter topic: %d records (err %v), want none", len(dead[0]), err)
	}
	t.Logf("stopped at %s with %d inputs committed (offsets %v)", source, want, committed)
}

func headerOf(m *kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestDeletingOneInputTopicLosesNothingOfTheOther: with two input topics, deleting one while batches are in
// flight takes its partitions away (librdkafka may report them lost); the other topic's records are all processed
// exactly once and the processor keeps running. A loss that skipped the rewind of the partitions still owned
// would skip the records of the batch it dropped.
func TestDeletingOneInputTopicLosesNothingOfTheOther(t *testing.T) {
	f := newFixture(t, fixtureOptions{inputPartitions: 3, outputPartitions: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	other, otherOut := f.input+"-b", f.output+"-b"
	for _, topic := range []string{other, otherOut} {
		if err := f.cluster.CreateTopic(ctx, topic, 3, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	const n = 30_000
	f.produce(ctx, 3, 0, n, nil)
	p, err := kafkatest.NewProducer(ctx, f.cluster.BootstrapServers(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Send(ctx, kafkatest.Records(other, 3, 0, n, 100), true); err != nil {
		t.Fatal(err)
	}
	proc := f.start("p0", map[string]string{
		"PROCESSOR_INPUT_TOPICS": f.input + "," + other,
		"PROCESSOR_ROUTE":        fmt.Sprintf("topic == %q ? %q : %q", other, otherOut, f.output),
		"PROCESSOR_ROUTE_TOPICS": otherOut,
		// About 3 s of transform for the 60,000 records, in batches of 2,000: the deletion lands mid-run.
		"PROCESSOR_TEST_COST_PER_RECORD": "50us",
		"PROCESSOR_MAX_BATCH_RECORDS":    "2000",
		"PROCESSOR_LOG_LEVEL":            "debug",
	})
	f.waitProgress(ctx, n*3/4)
	if err := f.cluster.DeleteTopic(ctx, other); err != nil {
		t.Fatal(err)
	}
	t.Logf("deleted input topic %s", other)
	f.waitCaughtUp(ctx)
	select {
	case <-proc.Done():
		t.Fatalf("the processor exited (code %d) after an input topic was deleted; log %s", proc.ExitCode(), proc.LogPath)
	default:
	}
	f.stopAll()
	if r := f.verdict(ctx, true); !r.OK() || r.Inputs != n {
		t.Fatalf("the remaining input topic: want %d inputs exactly once: %s", n, r)
	}
}
