package consume

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/eosproc/eosproc/internal/kafkatest"
	"github.com/eosproc/eosproc/stream"
	"github.com/eosproc/eosproc/testcontainers"
)

// The batch consumer on a real broker: what the loop relies on when partitions move, pause, rewind or close.
// One single-broker cluster serves every case; each has its own topic and group.
func TestBatchConsumerOnKafka(t *testing.T) {
	cluster := testcontainers.StartForTest(t, testcontainers.Options{Brokers: 1})
	bootstrap := cluster.BootstrapServers()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fill := func(t *testing.T, topic string, partitions, records int) {
		t.Helper()
		if err := cluster.CreateTopic(ctx, topic, partitions, 1, nil); err != nil {
			t.Fatal(err)
		}
		p, err := kafkatest.NewProducer(ctx, bootstrap, "")
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if err := p.Send(ctx, kafkatest.Records(topic, partitions, 0, records, 100), true); err != nil {
			t.Fatal(err)
		}
	}
	newConsumer := func(t *testing.T, topic, group string, interval time.Duration, maxRecords int) *Consumer {
		t.Helper()
		c, err := New(Config{Brokers: bootstrap, GroupID: group, Topics: []string{topic}, BatchInterval: interval,
			MaxBatchRecords: maxRecords, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	t.Run("RebalanceMidBatchDropsTheRevokedPartitionsRecords", func(t *testing.T) {
		fill(t, "rebalance", 4, 4000)
		// A assembles small batches, so that the revocation lands in a call that already gathered records.
		a := newConsumer(t, "rebalance", "rebalance", 200*time.Millisecond, 100)
		defer a.Close()
		// A owns all four partitions and has read some records, but committed nothing.
		assembleUntil(t, ctx, a, func(recs []stream.Record) bool { return len(recs) > 0 })
		if len(a.Assigned()) != 4 {
			t.Fatalf("first member owns %v, want 4 partitions", a.Assigned())
		}
		// B joins: cooperative-sticky moves two partitions to it while A is assembling its next batch. B collects
		// until it has read each partition it owns to the end (1000 records each).
		b := newConsumer(t, "rebalance", "rebalance", 200*time.Millisecond, 10000)
		defer b.Close()
		bRecs := make(chan map[stream.TopicPartition][]int64, 1)
		go func() {
			got := map[stream.TopicPartition][]int64{}
			deadline := time.Now().Add(2 * time.Minute)
			for time.Now().Before(deadline) {
				recs, err := b.Assemble(ctx, unlimited(b))
				if err != nil {
					break
				}
				for _, r := range recs {
					got[r.TopicPartition()] = append(got[r.TopicPartition()], r.Offset)
				}
				done := len(b.Assigned()) > 0
				for _, tp := range b.Assigned() {
					done = done && len(got[tp]) >= 1000
				}
				if done {
					break
				}
			}
			bRecs <- got
		}()
		// A keeps assembling small batches; the call in which the revocation lands must return none of the moved
		// partitions' records, although some of them were fetched before it.
		var last []stream.Record
		deadline := time.Now().Add(time.Minute)
		for len(a.Assigned()) != 2 && time.Now().Before(deadline) {
			recs, err := a.Assemble(ctx, unlimited(a))
			if err != nil {
				t.Fatal(err)
			}
			last = recs
		}
		if len(a.Assigned()) != 2 {
			t.Fatalf("after B joined A owns %v, want 2 partitions", a.Assigned())
		}
		revoked := a.TakeRevoked()
		if len(revoked) != 2 {
			t.Fatalf("TakeRevoked = %v, want the 2 partitions that moved", revoked)
		}
		for _, r := range last {
			if r.TopicPartition() == revoked[0] || r.TopicPartition() == revoked[1] {
				t.Errorf("record %s of a revoked partition returned by the batch the revocation landed in", r.Source())
			}
		}
		// B reads the moved partitions from the start (nothing was committed): all 1000 records of each, once.
		got := <-bRecs
		for _, tp := range revoked {
			assertContiguous(t, tp, got[tp], 0, 1000)
		}
	})

	t.Run("PauseWithRecordsQueuedLosesNothing", func(t *testing.T) {
		const perPartition = 3000
		fill(t, "pause", 3, 3*perPartition)
		c := newConsumer(t, "pause", "pause", 100*time.Millisecond, 10000)
		defer c.Close()
		// A budget of 50 per partition against a prefetch of thousands: partitions are carried over and paused
		// (at maxCarry) with records still queued in librdkafka, then resumed.
		seen := map[stream.TopicPartition][]int64{}
		deadline := time.Now().Add(2 * time.Minute)
		total, pausedAtOnce := 0, 0
		for total < 3*perPartition && time.Now().Before(deadline) {
			budgets := map[stream.TopicPartition]int64{}
			for _, tp := range c.Assigned() {
				budgets[tp] = 50
			}
			recs, err := c.Assemble(ctx, budgets)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				seen[r.TopicPartition()] = append(seen[r.TopicPartition()], r.Offset)
			}
			total += len(recs)
			pausedAtOnce = max(pausedAtOnce, len(c.paused))
		}
		if pausedAtOnce == 0 {
			t.Fatal("no partition was ever paused: the case under test did not happen")
		}
		if len(seen) != 3 {
			t.Fatalf("records from %d partitions, want 3", len(seen))
		}
		for tp, offs := range seen {
			assertContiguous(t, tp, offs, 0, perPartition)
		}
	})

	t.Run("PausedPartitionsLagKeepsGrowing", func(t *testing.T) {
		fill(t, "stale", 2, 6000)
		c := newConsumer(t, "stale", "stale", 100*time.Millisecond, 10000)
		defer c.Close()
		tp, other := stream.TopicPartition{Topic: "stale", Partition: 0}, stream.TopicPartition{Topic: "stale", Partition: 1}
		// A budget of 1 per batch against thousands prefetched, while the other partition may take them all:
		// the partition's records beyond its budget are carried over, and it is paused.
		deadline := time.Now().Add(time.Minute)
		for !c.paused[tp] && time.Now().Before(deadline) {
			if _, err := c.Assemble(ctx, map[stream.TopicPartition]int64{tp: 1, other: 1 << 40}); err != nil {
				t.Fatal(err)
			}
		}
		if !c.paused[tp] {
			t.Fatal("the partition was never paused: the case under test did not happen")
		}
		before := c.Lags()[tp]
		// 5,000 more records arrive while it is paused (not fetched): its lag must show them, or the rate
		// controller gives it only the floor and it is not resumed in time.
		p, err := kafkatest.NewProducer(ctx, bootstrap, "")
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if err := p.Send(ctx, kafkatest.Records("stale", 1, 6000, 5000, 100), true); err != nil {
			t.Fatal(err)
		}
		lag := before
		for deadline := time.Now().Add(30 * time.Second); lag < before+5000 && time.Now().Before(deadline); {
			if _, err := c.Assemble(ctx, map[stream.TopicPartition]int64{tp: 0, other: 0}); err != nil {
				t.Fatal(err)
			}
			lag = c.Lags()[tp]
		}
		if lag < before+5000 {
			t.Errorf("lag of the paused partition %d, was %d before 5000 more records arrived", lag, before)
		}
		if !c.paused[tp] {
			t.Error("the partition was resumed without a budget")
		}
	})

	t.Run("RewindAfterAbortRereadsFromTheCommittedOffsets", func(t *testing.T) {
		fill(t, "rewind", 2, 2000)
		c := newConsumer(t, "rewind", "rewind", 200*time.Millisecond, 300)
		defer c.Close()
		// Batch 1 commits; batch 2 is read but its transaction "aborts": the rewind must hand batch 2 out again.
		b1 := assembleUntil(t, ctx, c, func(recs []stream.Record) bool { return len(recs) > 0 })
		next := map[stream.TopicPartition]int64{}
		for _, r := range b1 {
			next[r.TopicPartition()] = max(next[r.TopicPartition()], r.Offset+1)
		}
		// Commit only one partition, so the other rewinds to where it started, with nothing committed.
		var onlyOne stream.TopicPartition
		for tp := range next {
			onlyOne = tp
			break
		}
		if err := c.CommitOffsets(map[stream.TopicPartition]int64{onlyOne: next[onlyOne]}); err != nil {
			t.Fatal(err)
		}
		b2 := assembleUntil(t, ctx, c, func(recs []stream.Record) bool { return len(recs) > 0 })
		if len(b2) == 0 {
			t.Fatal("second batch empty")
		}
		if err := c.Rewind(ctx); err != nil {
			t.Fatal(err)
		}
		again := map[stream.TopicPartition][]int64{}
		deadline := time.Now().Add(time.Minute)
		for (len(again[onlyOne]) == 0 || len(again) < 2) && time.Now().Before(deadline) {
			recs, err := c.Assemble(ctx, unlimited(c))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				again[r.TopicPartition()] = append(again[r.TopicPartition()], r.Offset)
			}
		}
		for tp, offs := range again {
			want := int64(0) // nothing committed: back to the first record
			if tp == onlyOne {
				want = next[onlyOne]
			}
			if offs[0] != want {
				t.Errorf("%s after the rewind starts at %d, want %d", tp, offs[0], want)
			}
			assertContiguous(t, tp, offs, want, int(int64(len(offs))))
		}
	})

	t.Run("RecordsOutliveTheConsumer", func(t *testing.T) {
		fill(t, "close", 1, 500)
		c := newConsumer(t, "close", "close", 200*time.Millisecond, 10000)
		held := assembleUntil(t, ctx, c, func(recs []stream.Record) bool { return len(recs) == 500 })
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		// The keys and values are the consumer's copies, not librdkafka's memory: still intact after Close.
		for _, r := range held {
			want := kafkatest.Records("close", 1, int(r.Offset), 1, 100)[0]
			if string(r.Key) != string(want.Key) || string(r.Value) != string(want.Value) {
				t.Fatalf("record %d after Close: key %q value %q, want %q %q", r.Offset, r.Key, r.Value, want.Key, want.Value)
			}
		}
	})
}

// assembleUntil assembles (with unlimited budgets) until done says the records so far are enough.
func assembleUntil(t *testing.T, ctx context.Context, c *Consumer, done func([]stream.Record) bool) []stream.Record {
	t.Helper()
	var all []stream.Record
	deadline := time.Now().Add(time.Minute)
	for !done(all) {
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %d records", len(all))
		}
		recs, err := c.Assemble(ctx, unlimited(c))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
	}
	return all
}

func unlimited(c *Consumer) map[stream.TopicPartition]int64 {
	b := map[stream.TopicPartition]int64{}
	for _, tp := range c.Assigned() {
		b[tp] = 1 << 40
	}
	return b
}

// assertContiguous checks that offs are first, first+1, ... first+n-1: nothing lost, nothing twice, in order.
func assertContiguous(t *testing.T, tp stream.TopicPartition, offs []int64, first int64, n int) {
	t.Helper()
	if len(offs) != n {
		t.Errorf("%s: %d records, want %d", tp, len(offs), n)
	}
	for i, o := range offs {
		if o != first+int64(i) {
			t.Errorf("%s: record %d has offset %d, want %d", tp, i, o, first+int64(i))
			return
		}
	}
}
