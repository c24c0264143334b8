package consume

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/internal/librdkafka"
	"github.com/eosproc/eosproc/stream"
)

// modelClient is librdkafka's consumer as far as one partition's assignment and fetching go: a log of records
// 0..end-1, a fetch position that each Consume call moves past what it returns (at most perCall records), and
// rebalances run inside a chosen call, as librdkafka serves its rebalance callback inside
// rd_kafka_consume_batch_queue, between the records it gathers.
type modelClient struct {
	tp        stream.TopicPartition
	end       int64
	perCall   int
	value     []byte // every record's value
	committed int64  // the group's committed offset

	position  int64
	assigned  bool
	lost      bool
	calls     int
	rebalance func(assign bool, parts []kafka.TopicPartition)
	// inCall, when set, runs inside the call numbered at, after before records were gathered.
	at, before int
	inCall     func(m *modelClient)
}

func (m *modelClient) Consume(_ time.Duration, max int, dst []stream.Record) ([]stream.Record, []librdkafka.PartitionError, error) {
	m.calls++
	limit := min(max, m.perCall)
	gather := func(n int) {
		for ; n > 0 && m.assigned && m.position < m.end; n-- {
			dst = append(dst, stream.Record{Topic: m.tp.Topic, Partition: m.tp.Partition, Offset: m.position, Value: m.value})
			m.position++
		}
	}
	if m.inCall != nil && m.calls == m.at {
		gather(min(m.before, limit))
		m.inCall(m)
	}
	gather(limit - len(dst))
	return dst, nil, nil
}

func (m *modelClient) IncrementalAssign(parts []kafka.TopicPartition) error {
	for _, p := range parts {
		m.assigned = true
		if p.Offset >= 0 {
			m.position = int64(p.Offset)
		}
		// Otherwise librdkafka keeps the fetch position it has, as it did for a partition assigned again before
		// its previous assignment's fetch state was gone.
	}
	return nil
}

func (m *modelClient) IncrementalUnassign([]kafka.TopicPartition) error {
	m.assigned = false
	return nil
}

func (m *modelClient) AssignmentLost() bool { return m.lost }

func (m *modelClient) Committed(parts []kafka.TopicPartition, _ time.Duration) ([]kafka.TopicPartition, error) {
	out := slices.Clone(parts)
	for i := range out {
		out[i].Offset = kafka.Offset(m.committed)
	}
	return out, nil
}

func (m *modelClient) Seek(parts []kafka.TopicPartition, _ time.Duration) ([]kafka.TopicPartition, error) {
	for _, p := range parts {
		m.position = int64(p.Offset)
	}
	return parts, nil
}

func (m *modelClient) Subscribe([]string) error                                      { return nil }
func (m *modelClient) Pause([]kafka.TopicPartition) error                            { return nil }
func (m *modelClient) Resume([]kafka.TopicPartition) error                           { return nil }
func (m *modelClient) FatalError() error                                             { return nil }
func (m *modelClient) Close() error                                                  { return nil }
func (m *modelClient) Commit([]kafka.TopicPartition) ([]kafka.TopicPartition, error) { return nil, nil }
func (m *modelClient) GroupMetadata() (*librdkafka.GroupMetadata, error)             { return nil, nil }
func (m *modelClient) Position(parts []kafka.TopicPartition) ([]kafka.TopicPartition, error) {
	out := slices.Clone(parts)
	for i := range out {
		if m.assigned && tpOf(out[i]) == m.tp {
			out[i].Offset = kafka.Offset(m.position)
		}
	}
	return out, nil
}
func (m *modelClient) Watermarks(stream.TopicPartition) (int64, int64, error) { return 0, m.end, nil }
func (m *modelClient) QueryWatermarks(stream.TopicPartition, time.Duration) (int64, int64, error) {
	return 0, m.end, nil
}

// A partition lost and assigned back to this member within one consume call: the call returns records of the
// old assignment and, after the reassignment, records of the new one, and take drops them all (it cannot tell
// them apart), while the fetch position has moved past them. Every record from the committed offset on must
// still reach a batch, once and in order: this is the loss the "leader cut off the network" chaos row found.
func TestAPartitionAssignedAgainWithinOneCallLosesNothing(t *testing.T) {
	for _, tt := range []struct {
		name string
		// the new assignment's start: the committed offset, or none (librdkafka keeps its fetch position)
		committed int64
	}{
		{"committed offset", 100},
		{"no committed offset", -1001},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tp := stream.TopicPartition{Topic: "in", Partition: 0}
			m := &modelClient{tp: tp, end: 400, perCall: 80, committed: tt.committed, at: 1, before: 50}
			c := newConsumer(Config{BatchInterval: 20 * time.Millisecond, MaxBatchRecords: 1000},
				slog.New(slog.NewTextHandler(io.Discard, nil)), "earliest")
			c.k, m.rebalance = m, c.rebalance
			first := int64(100)
			m.position = first // where the first assignment starts (librdkafka's choice when nothing is committed)
			c.rebalance(true, []kafka.TopicPartition{ktp(tp, kafka.OffsetInvalid)})
			if tt.committed >= 0 {
				first = tt.committed
			}
			m.inCall = func(m *modelClient) {
				m.lost = true
				m.rebalance(false, []kafka.TopicPartition{ktp(tp, kafka.OffsetInvalid)})
				m.lost = false
				m.rebalance(true, []kafka.TopicPartition{ktp(tp, kafka.OffsetInvalid)})
			}

			var got []int64
			budgets := map[stream.TopicPartition]int64{tp: 1000}
			for range 20 {
				batch, err := c.Assemble(context.Background(), budgets)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range batch {
					got = append(got, r.Offset)
				}
				c.TakeRevoked()
				if len(got) > 0 && got[len(got)-1] == m.end-1 {
					break
				}
			}
			if m.calls < 2 {
				t.Fatalf("%d consume calls: the reassignment never ran", m.calls)
			}
			for i, off := range got {
				if want := first + int64(i); off != want {
					t.Fatalf("batches hold offsets %d.. (%d records); at index %d got %d, want %d: records lost or repeated",
						got[0], len(got), i, off, want)
				}
			}
			if len(got) == 0 || got[len(got)-1] != m.end-1 {
				t.Fatalf("batches ended at offset %v, want every record up to %d", got[max(len(got)-1, 0):], m.end-1)
			}
		})
	}
}

// The batch sink sees the batch grow poll by poll, each view extending the one before, and after a revocation
// mid-batch it is shown the batch without the revoked partition's records, once the barrier (told which
// partitions go) has returned; an error from the sink ends Assemble with it.
func TestTheBatchSinkSeesTheBatchGrowAndARevocationDropRecords(t *testing.T) {
	tp := stream.TopicPartition{Topic: "in", Partition: 0}
	m := &modelClient{tp: tp, end: 1000, perCall: 30, at: 3, before: 10}
	c := newConsumer(Config{BatchInterval: 50 * time.Millisecond, MaxBatchRecords: 200},
		slog.New(slog.NewTextHandler(io.Discard, nil)), "earliest")
	c.k, m.rebalance = m, c.rebalance
	c.rebalance(true, []kafka.TopicPartition{ktp(tp, kafka.OffsetInvalid)})
	var barrierSaw []stream.TopicPartition
	c.SetRevokeBarrier(func(revoked []stream.TopicPartition) { barrierSaw = revoked })
	m.inCall = func(m *modelClient) { m.rebalance(false, []kafka.TopicPartition{ktp(tp, kafka.OffsetInvalid)}) }
	var views [][]int64
	c.SetBatchSink(func(batch []stream.Record) error {
		var offs []int64
		for _, r := range batch {
			offs = append(offs, r.Offset)
		}
		views = append(views, offs)
		return nil
	})
	batch, err := c.Assemble(context.Background(), map[stream.TopicPartition]int64{tp: 200})
	if err != nil {
		t.Fatal(err)
	}
	// Two polls of 30 records shown, then the third call's revocation drops them all: nothing is left to show,
	// and the batch ends with its interval.
	want := [][]int64{offsets(0, 30), offsets(0, 60)}
	if !slices.EqualFunc(views, want, slices.Equal) {
		t.Errorf("the sink was shown %v, want %v", views, want)
	}
	if len(batch) != 0 {
		t.Errorf("Assemble returned %d records of a revoked partition", len(batch))
	}
	if !slices.Equal(barrierSaw, []stream.TopicPartition{tp}) {
		t.Errorf("the barrier was told %v were going, want %v", barrierSaw, tp)
	}

	// Assigned again: the sink's error ends the next Assemble, which returns it.
	c.TakeRevoked()
	c.rebalance(true, []kafka.TopicPartition{ktp(tp, 500)})
	stop := errors.New("stop")
	c.SetBatchSink(func([]stream.Record) error { return stop })
	if _, err := c.Assemble(context.Background(), map[stream.TopicPartition]int64{tp: 200}); !errors.Is(err, stop) {
		t.Errorf("Assemble = %v, want the sink's error", err)
	}
}

func offsets(from, to int64) []int64 {
	var o []int64
	for i := from; i < to; i++ {
		o = append(o, i)
	}
	return o
}

// While a backlog waits, each batch takes twice as many records as the one before, up to MaxBatchRecords and
// within maxGrownBatchBytes; once the consumer has caught up, the next batch closes at BatchRecords again.
func TestBatchesGrowWhileABacklogWaits(t *testing.T) {
	for _, tc := range []struct {
		name                string
		batch, max, backlog int
		budget              int64
		value               []byte
		want                []int
	}{
		{"doubling up to the maximum", 100, 350, 1000, 1 << 40, nil, []int{100, 200, 350, 350, 0, 100}},
		{"a batch cut short keeps its size while the backlog waits", 100, 350, 1000, 250, nil,
			[]int{100, 200, 250, 250, 200, 100}},
		{"large records stay at the batch size", 20000, 100000, 80000, 1 << 40, make([]byte, 1024),
			[]int{20000, 20000, 20000, 20000, 0, 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := stream.TopicPartition{Topic: "in", Partition: 0}
			m := &modelClient{tp: tp, end: int64(tc.backlog), perCall: 1 << 20, value: tc.value}
			c := newConsumer(Config{BatchInterval: 20 * time.Millisecond, BatchRecords: tc.batch, MaxBatchRecords: tc.max},
				slog.New(slog.NewTextHandler(io.Discard, nil)), "earliest")
			c.k, m.rebalance = m, c.rebalance
			c.rebalance(true, []kafka.TopicPartition{ktp(tp, kafka.OffsetInvalid)})
			var sizes []int
			for range len(tc.want) {
				if len(sizes) == len(tc.want)-1 {
					m.end += 100 // caught up, then a trickle: less than a batch waits
				}
				c.Lags()
				batch, err := c.Assemble(context.Background(), map[stream.TopicPartition]int64{tp: tc.budget})
				if err != nil {
					t.Fatal(err)
				}
				sizes = append(sizes, len(batch))
			}
			if !slices.Equal(sizes, tc.want) {
				t.Errorf("batch sizes %v, want %v", sizes, tc.want)
			}
		})
	}
}

// The backlog's last records, fewer than the grown batch size, make a batch that closes once it has them instead
// of waiting out the interval for more.
func TestTheBacklogsLastBatchDoesNotWaitOutTheInterval(t *testing.T) {
	tp := stream.TopicPartition{Topic: "in", Partition: 0}
	m := &modelClient{tp: tp, end: 1000, perCall: 1 << 20}
	const interval = time.Minute
	c := newConsumer(Config{BatchInterval: interval, BatchRecords: 100, MaxBatchRecords: 400},
		slog.New(slog.NewTextHandler(io.Discard, nil)), "earliest")
	c.k, m.rebalance = m, c.rebalance
	c.rebalance(true, []kafka.TopicPartition{ktp(tp, kafka.OffsetInvalid)})
	ctx, cancel := context.WithTimeout(context.Background(), interval/2)
	defer cancel()
	var sizes []int
	for range 4 {
		c.Lags()
		batch, err := c.Assemble(ctx, map[stream.TopicPartition]int64{tp: 1 << 40})
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(batch))
	}
	if want := []int{100, 200, 400, 300}; !slices.Equal(sizes, want) || ctx.Err() != nil {
		t.Errorf("batch sizes %v (context: %v), want %v each closed before the interval ended", sizes, ctx.Err(), want)
	}
}

// A full batch that cannot go yet (the transaction before it still runs) takes what arrives meanwhile, up to
// MaxBatchRecords and within maxHeldBatchBytes, and closes as soon as the hold ends.
func TestAFullBatchHeldTakesWhatArrivesWithinItsLimits(t *testing.T) {
	for _, tc := range []struct {
		name        string
		batch, max  int
		value       []byte
		holdChecks  int // how many times the hold reports true
		want        int
		wantChecked int
	}{
		{"not held: closes full", 100, 350, nil, 0, 100, 1},
		{"held: takes what arrives while held", 100, 350, nil, 3, 250, 4},
		{"held throughout: up to the maximum", 100, 350, nil, 1 << 30, 350, 5},
		{"large records: within the bytes bound", 10000, 100000, make([]byte, 1024), 1 << 30,
			10000 * maxHeldBatchBytes / (10000 * 1024), 128},
		{"large records: no more beyond the bytes bound", 20000, 100000, make([]byte, 1024), 1 << 30, 20000, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := stream.TopicPartition{Topic: "in", Partition: 0}
			m := &modelClient{tp: tp, end: 1 << 20, perCall: 50, value: tc.value}
			c := newConsumer(Config{BatchInterval: time.Minute, BatchRecords: tc.batch, MaxBatchRecords: tc.max},
				slog.New(slog.NewTextHandler(io.Discard, nil)), "earliest")
			c.k, m.rebalance = m, c.rebalance
			c.rebalance(true, []kafka.TopicPartition{ktp(tp, kafka.OffsetInvalid)})
			checks := 0
			c.SetBatchHold(func() bool {
				checks++
				return checks <= tc.holdChecks
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			batch, err := c.Assemble(ctx, map[stream.TopicPartition]int64{tp: 1 << 40})
			if err != nil {
				t.Fatal(err)
			}
			if len(batch) != tc.want || checks != tc.wantChecked || ctx.Err() != nil {
				t.Errorf("batch of %d records after %d hold checks (context: %v), want %d after %d",
					len(batch), checks, ctx.Err(), tc.want, tc.wantChecked)
			}
			for i, r := range batch {
				if r.Offset != int64(i) {
					t.Fatalf("record %d of the batch has offset %d: records lost or repeated", i, r.Offset)
				}
			}
		})
	}
}
