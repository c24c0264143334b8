package txn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/eosproc/eosproc/consume"
	"github.com/eosproc/eosproc/dedupe"
	"github.com/eosproc/eosproc/produce"
	"github.com/eosproc/eosproc/stream"
)

// fakeConsumer hands out scripted batches. A Rewind goes back to the first batch handed out whose transaction
// has not committed, as a real rewind to the committed offsets would (the loop may have assembled the next batch
// beside that transaction); once the script has run out and every batch has committed, it stops the loop.
type fakeConsumer struct {
	batches   [][]stream.Record
	next      int
	handed    []int // indexes of the non-empty batches handed out, in order
	producer  *fakeProducer
	alternate *fakeProducer // the loop's Alternate, if it has one
	stop      context.CancelFunc
	rewinds   int
	committed []map[stream.TopicPartition]int64
	// offsetCommits counts committed, for settled, which the loop's goroutine calls beside the transaction's.
	offsetCommits atomic.Int64
	group         *produce.GroupMetadata
	groupErrs     []error // returned by GroupMetadata, one per call, before it succeeds
	barrier       func([]stream.TopicPartition)
	hold          func() bool
	// sink is the loop's batch sink; with chunked, Assemble shows it a batch one record at a time, as the real
	// consumer does poll by poll (assembling is then called before each record with the same number).
	sink         func([]stream.Record) error
	chunked      bool
	beforeRecord func(assembly, record int)
	gone         map[stream.TopicPartition]bool // revoked during the current assembly
	failNow      error                          // set by beforeRecord: the assembly fails with it
	// assembling, if set, is called at the start of every Assemble with its number (from 1): a rebalance there
	// calls barrier, as the real consumer's callback does.
	assembling func(n int)
	assembles  int
	revoked    []stream.TopicPartition // since the last TakeRevoked
	// budgets are those of every Assemble; with withinBudgets, a batch holding records of a partition without a
	// budget is held back, as the real consumer carries them, until one is given.
	budgets       []map[stream.TopicPartition]int64
	withinBudgets bool
	// commitGate, if set, holds every CommitOffsets (at_least_once's commit) until it is closed.
	commitGate chan struct{}
}

func (c *fakeConsumer) Assigned() []stream.TopicPartition {
	return []stream.TopicPartition{{Topic: "in", Partition: 0}, {Topic: "in", Partition: 1}}
}

func (c *fakeConsumer) Lags() map[stream.TopicPartition]int64 {
	return map[stream.TopicPartition]int64{{Topic: "in", Partition: 0}: 5, {Topic: "in", Partition: 1}: -1}
}

func (c *fakeConsumer) SetRevokeBarrier(wait func([]stream.TopicPartition)) { c.barrier = wait }

func (c *fakeConsumer) SetBatchSink(sink func([]stream.Record) error) { c.sink = sink }

func (c *fakeConsumer) SetBatchHold(hold func() bool) { c.hold = hold }

// settled is how many of the handed-out batches committed: their transactions (or, at_least_once, their offset
// commits) succeeded, in order.
func (c *fakeConsumer) settled() int {
	commits := c.producer.commits.Load()
	if c.alternate != nil {
		commits += c.alternate.commits.Load()
	}
	return int(max(commits, c.offsetCommits.Load()))
}

func (c *fakeConsumer) Batching() (time.Duration, int) { return time.Second, 1000 }

func (c *fakeConsumer) Assemble(_ context.Context, budgets map[stream.TopicPartition]int64) ([]stream.Record, error) {
	c.assembles++
	c.budgets = append(c.budgets, budgets)
	if c.assembling != nil {
		c.assembling(c.assembles)
	}
	if c.next >= len(c.batches) {
		if c.settled() >= len(c.handed) {
			c.stop()
		}
		return nil, nil
	}
	if c.withinBudgets {
		for _, r := range c.batches[c.next] {
			if budgets[r.TopicPartition()] <= 0 {
				return nil, nil
			}
		}
	}
	c.next++
	if len(c.batches[c.next-1]) > 0 {
		c.handed = append(c.handed, c.next-1)
	}
	if c.chunked && c.sink != nil {
		return c.showRecordByRecord(c.batches[c.next-1])
	}
	return c.batches[c.next-1], nil
}

// showRecordByRecord assembles batch as the real consumer does poll by poll, one record a poll: before each, the
// record hook may revoke partitions (revokeNow), whose records are then dropped from the batch; after each, the
// sink is shown the batch so far.
func (c *fakeConsumer) showRecordByRecord(batch []stream.Record) ([]stream.Record, error) {
	var pending []stream.Record
	c.gone = map[stream.TopicPartition]bool{}
	for i, r := range batch {
		if c.beforeRecord != nil {
			c.beforeRecord(c.assembles, i)
		}
		if c.failNow != nil {
			return nil, c.failNow
		}
		pending = slices.DeleteFunc(pending, func(r stream.Record) bool { return c.gone[r.TopicPartition()] })
		if c.gone[r.TopicPartition()] {
			continue
		}
		pending = append(pending, r)
		if err := c.sink(pending); err != nil {
			return nil, err
		}
	}
	return pending, nil
}

// revokeNow revokes partitions in the middle of a record-by-record assembly, as the real consumer's callback
// does: the barrier first, then the partitions' records go, and no script batch holds them any more (their
// next owner reads them).
func (c *fakeConsumer) revokeNow(parts ...stream.TopicPartition) {
	c.barrier(parts)
	for _, tp := range parts {
		c.gone[tp] = true
		c.revoked = append(c.revoked, tp)
	}
	for i := range c.batches {
		c.batches[i] = slices.DeleteFunc(slices.Clone(c.batches[i]), func(r stream.Record) bool { return c.gone[r.TopicPartition()] })
	}
}

func (c *fakeConsumer) Rewind(context.Context) error {
	c.rewinds++
	if k := c.settled(); k < len(c.handed) {
		c.next = c.handed[k]
		c.handed = c.handed[:k]
	}
	return nil
}

func (c *fakeConsumer) GroupMetadata() (*produce.GroupMetadata, error) {
	if len(c.groupErrs) > 0 {
		err := c.groupErrs[0]
		c.groupErrs = c.groupErrs[1:]
		return nil, err
	}
	return c.group, nil
}

func (c *fakeConsumer) TakeRevoked() []stream.TopicPartition {
	r := c.revoked
	c.revoked = nil
	return r
}

func (c *fakeConsumer) CommitOffsets(o map[stream.TopicPartition]int64) error {
	if c.commitGate != nil {
		<-c.commitGate // no time bound: a busy machine must not fail the test, and every test closes its gate
	}
	c.committed = append(c.committed, o)
	c.offsetCommits.Add(1)
	return nil
}

// fakeProducer records every call and fails the ones its script says, in order, per operation.
type fakeProducer struct {
	commits atomic.Int64 // transactions committed; read by the fake consumer beside the transaction
	// commitGate, if set, holds every Commit until it is closed or a second has passed; atGate, if set, is
	// closed when a Commit first reaches it.
	commitGate, atGate chan struct{}
	// onProduce, if set, is called before every Produce.
	onProduce func()
	calls     []string
	produced  []stream.Record
	largest   int // most records handed over in one Produce call
	offsets   []map[stream.TopicPartition]int64
	groups    []*produce.GroupMetadata
	fail      map[string][]error
}

func (p *fakeProducer) do(op string) error {
	p.calls = append(p.calls, op)
	if errs := p.fail[op]; len(errs) > 0 {
		p.fail[op] = errs[1:]
		return errs[0]
	}
	return nil
}

func (p *fakeProducer) InitTransactions(context.Context) error { return p.do("init") }
func (p *fakeProducer) Begin() error                           { return p.do("begin") }
func (p *fakeProducer) Commit() error {
	if p.atGate != nil {
		close(p.atGate)
		p.atGate = nil
	}
	if p.commitGate != nil {
		select {
		case <-p.commitGate:
		case <-time.After(time.Second):
			p.calls = append(p.calls, "gate timed out")
		}
	}
	if err := p.do("commit"); err != nil {
		return err
	}
	p.commits.Add(1)
	return nil
}
func (p *fakeProducer) Abort() error                { return p.do("abort") }
func (p *fakeProducer) Flush(context.Context) error { return p.do("flush") }

// Produce takes the records one by one like the real producer: a record refused for itself is skipped and
// reported by index, any other failure stops the batch.
func (p *fakeProducer) Produce(_ context.Context, recs []stream.Record) (refused []int, err error) {
	if p.onProduce != nil {
		p.onProduce()
	}
	p.largest = max(p.largest, len(recs))
	for i, r := range recs {
		if perr := p.do("produce"); perr != nil {
			if !errors.Is(perr, produce.ErrRecordRefused) {
				return refused, perr
			}
			refused = append(refused, i)
			if err == nil {
				err = perr
			}
			continue
		}
		p.produced = append(p.produced, r)
	}
	return refused, err
}

func (p *fakeProducer) ProduceToPartitions(_ context.Context, recs []stream.Record) error {
	for _, r := range recs {
		if err := p.do("produce_changelog"); err != nil {
			return err
		}
		p.produced = append(p.produced, r)
	}
	return nil
}

func (p *fakeProducer) SendOffsets(_ context.Context, o map[stream.TopicPartition]int64, g *produce.GroupMetadata) error {
	p.offsets = append(p.offsets, maps.Clone(o))
	p.groups = append(p.groups, g)
	return p.do("send_offsets")
}

func rec(partition int32, offset int64, headers ...stream.Header) stream.Record {
	return stream.Record{Topic: "in", Partition: partition, Offset: offset, Key: []byte(fmt.Sprint("k", offset)),
		Value: []byte(fmt.Sprint("v", offset)), Headers: headers}
}

func classed(c produce.Class, msg string) error {
	return &produce.Error{Op: "test", Class: c, Err: errors.New(msg)}
}

var (
	p0 = stream.TopicPartition{Topic: "in", Partition: 0}
	p1 = stream.TopicPartition{Topic: "in", Partition: 1}
)

func TestErrorPolicy(t *testing.T) {
	twoPartitions := []stream.Record{rec(0, 10), rec(1, 3), rec(0, 11), rec(0, 12)}
	onePartition := []stream.Record{rec(1, 7)}

	tests := []struct {
		name        string
		batches     [][]stream.Record
		fail        map[string][]error
		atLeastOnce bool
		wantErr     string // empty: Run returns nil
		wantCalls   []string
		wantOffsets []map[stream.TopicPartition]int64 // offsets sent (exactly_once) or committed (at_least_once)
		wantRewinds int
	}{
		{
			name:        "committed batch sends last offset plus one for each partition in it",
			batches:     [][]stream.Record{twoPartitions, onePartition},
			wantCalls:   []string{"init", "begin", "produce", "produce", "produce", "produce", "send_offsets", "commit", "begin", "produce", "send_offsets", "commit"},
			wantOffsets: []map[stream.TopicPartition]int64{{p0: 13, p1: 4}, {p1: 8}},
		},
		{
			name:      "empty batch opens no transaction",
			batches:   [][]stream.Record{{}},
			wantCalls: []string{"init"},
		},
		{
			name:        "retriable init and send offsets are retried, offsets unchanged",
			batches:     [][]stream.Record{onePartition},
			fail:        map[string][]error{"init": {classed(produce.Retriable, "coordinator loading")}, "send_offsets": {classed(produce.Retriable, "coordinator loading"), classed(produce.Retriable, "again")}},
			wantCalls:   []string{"init", "init", "begin", "produce", "send_offsets", "send_offsets", "send_offsets", "commit"},
			wantOffsets: []map[stream.TopicPartition]int64{{p1: 8}, {p1: 8}, {p1: 8}},
		},
		{
			name:        "retriable commit is retried",
			batches:     [][]stream.Record{onePartition},
			fail:        map[string][]error{"commit": {classed(produce.Retriable, "timed out")}},
			wantCalls:   []string{"init", "begin", "produce", "send_offsets", "commit", "commit"},
			wantOffsets: []map[stream.TopicPartition]int64{{p1: 8}},
		},
		{
			name:        "abortable commit aborts, rewinds and redoes the batch",
			batches:     [][]stream.Record{onePartition},
			fail:        map[string][]error{"commit": {classed(produce.Abortable, "transaction aborted by broker")}},
			wantCalls:   []string{"init", "begin", "produce", "send_offsets", "commit", "flush", "abort", "begin", "produce", "send_offsets", "commit"},
			wantOffsets: []map[stream.TopicPartition]int64{{p1: 8}, {p1: 8}},
			wantRewinds: 1,
		},
		{
			name:        "failed delivery aborts before offsets are sent",
			batches:     [][]stream.Record{onePartition},
			fail:        map[string][]error{"produce": {classed(produce.Abortable, "deliver record to out/0: message timed out")}},
			wantCalls:   []string{"init", "begin", "produce", "abort", "begin", "produce", "send_offsets", "commit"},
			wantOffsets: []map[stream.TopicPartition]int64{{p1: 8}},
			wantRewinds: 1,
		},
		{
			name:        "fenced producer stops the loop without aborting",
			batches:     [][]stream.Record{onePartition},
			fail:        map[string][]error{"send_offsets": {classed(produce.Fatal, "fenced by a newer instance")}},
			wantErr:     "fenced by a newer instance",
			wantCalls:   []string{"init", "begin", "produce", "send_offsets"},
			wantOffsets: []map[stream.TopicPartition]int64{{p1: 8}},
		},
		{
			name:      "unclassified error is fatal",
			batches:   [][]stream.Record{onePartition},
			fail:      map[string][]error{"produce": {errors.New("something unexpected")}},
			wantErr:   "something unexpected",
			wantCalls: []string{"init", "begin", "produce"},
		},
		{
			name:      "fatal init stops before any batch",
			batches:   [][]stream.Record{onePartition},
			fail:      map[string][]error{"init": {classed(produce.Fatal, "transactional id authorization failed")}},
			wantErr:   "authorization failed",
			wantCalls: []string{"init"},
		},
		{
			name:        "at_least_once flushes before committing offsets",
			batches:     [][]stream.Record{twoPartitions},
			atLeastOnce: true,
			wantCalls:   []string{"init", "begin", "produce", "produce", "produce", "produce", "flush"},
			wantOffsets: []map[stream.TopicPartition]int64{{p0: 13, p1: 4}},
		},
		{
			name:        "at_least_once failed delivery rewinds without committing offsets",
			batches:     [][]stream.Record{onePartition},
			atLeastOnce: true,
			fail:        map[string][]error{"flush": {classed(produce.Abortable, "deliver record: broker down")}},
			wantCalls:   []string{"init", "begin", "produce", "flush", "begin", "produce", "flush"},
			wantOffsets: []map[stream.TopicPartition]int64{{p1: 8}},
			wantRewinds: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			group := &produce.GroupMetadata{} // only its identity matters: the loop passes it on untouched
			c := &fakeConsumer{batches: tt.batches, stop: cancel, group: group}
			p := &fakeProducer{fail: tt.fail}
			c.producer = p
			l := &Loop{Consumer: c, Producer: p, OutputTopic: "out", DeadLetterTopic: "dlq", AtLeastOnce: tt.atLeastOnce,
				MinBackoff: time.Microsecond, MaxBackoff: time.Millisecond}

			err := l.Run(ctx)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Run: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Run error = %v, want one containing %q", err, tt.wantErr)
			}
			if !slices.Equal(p.calls, tt.wantCalls) {
				t.Errorf("calls\n got %v\nwant %v", p.calls, tt.wantCalls)
			}
			gotOffsets := p.offsets
			if tt.atLeastOnce {
				gotOffsets = c.committed
			}
			if !slices.EqualFunc(gotOffsets, tt.wantOffsets, maps.Equal) {
				t.Errorf("offsets\n got %v\nwant %v", gotOffsets, tt.wantOffsets)
			}
			for _, g := range p.groups {
				if g != group {
					t.Errorf("offsets sent with group metadata %p, want the consumer's %p", g, group)
				}
			}
			if c.rewinds != tt.wantRewinds {
				t.Errorf("rewinds = %d, want %d", c.rewinds, tt.wantRewinds)
			}
		})
	}
}

func TestFailedRecordIsDeadLetteredInTheSameTransaction(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bad := rec(0, 5, stream.Header{Key: "h", Value: []byte("x")})
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4), bad, rec(0, 6), rec(0, 7)}}, stop: cancel}
	p := &fakeProducer{}
	c.producer = p
	transform := func(ctx context.Context, in stream.Record) ([]stream.Record, error) {
		switch in.Offset {
		case 5:
			return nil, errors.New("cannot parse value")
		case 6:
			panic("transform bug")
		case 7:
			return nil, &stream.RecordError{Stage: "map", Class: "bad_input", Err: errors.New("map: not JSON")}
		}
		return stream.Identity(ctx, in)
	}
	reg := prometheus.NewRegistry()
	l := &Loop{Consumer: c, Producer: p, Transform: transform, OutputTopic: "out", DeadLetterTopic: "dlq",
		AppID: "app", InstanceID: "i-1", Metrics: NewMetrics(reg)}
	before := time.Now()
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(p.produced) != 4 {
		t.Fatalf("produced %d records, want 4: %+v", len(p.produced), p.produced)
	}
	if out := p.produced[0]; out.Topic != "out" || header(out, stream.SourceHeader) != "in/0/4" {
		t.Errorf("output = %+v, want topic out with source in/0/4", out)
	}
	dead := p.produced[1]
	want := map[string]string{
		"h": "x", HeaderError: "cannot parse value", HeaderErrorStage: StageTransform, HeaderErrorClass: ClassError,
		HeaderAppID: "app", HeaderInstanceID: "i-1", HeaderSourceTopic: "in", HeaderSourcePartition: "0",
		HeaderSourceOffset: "5", stream.SourceHeader: "in/0/5",
	}
	for k, v := range want {
		if got := header(dead, k); got != v {
			t.Errorf("dead letter header %q = %q, want %q", k, got, v)
		}
	}
	if at, err := time.Parse(time.RFC3339Nano, header(dead, HeaderErrorTime)); err != nil || at.Before(before.Truncate(time.Millisecond)) || at.After(time.Now()) {
		t.Errorf("dead letter header %s = %q, want the time it was dead-lettered (%v)", HeaderErrorTime, header(dead, HeaderErrorTime), err)
	}
	if dead.Topic != "dlq" || string(dead.Key) != "k5" || string(dead.Value) != "v5" {
		t.Errorf("dead letter = %+v, want topic dlq with the input's key and value", dead)
	}
	if panicked := p.produced[2]; panicked.Topic != "dlq" || !strings.Contains(header(panicked, HeaderError), "transform bug") ||
		header(panicked, HeaderErrorStage) != StageTransform || header(panicked, HeaderErrorClass) != ClassPanic {
		t.Errorf("panicking record = %+v, want it dead-lettered with the panic, stage transform, class panic", panicked)
	}
	if staged := p.produced[3]; header(staged, HeaderErrorStage) != "map" || header(staged, HeaderErrorClass) != "bad_input" ||
		header(staged, HeaderError) != "map: not JSON" {
		t.Errorf("record failed with a stream.RecordError = %+v, want its stage and class in the headers", staged)
	}
	if want := (map[stream.TopicPartition]int64{p0: 8}); !maps.Equal(p.offsets[0], want) {
		t.Errorf("offsets = %v, want %v: dead letters are consumed like any record", p.offsets[0], want)
	}
	for stage, want := range map[string]float64{StageTransform: 2, "map": 1, StageSize: 0, StageDedupe: 0, StageProduce: 0} {
		var m dto.Metric
		if err := l.Metrics.deadLetters.WithLabelValues(stage).Write(&m); err != nil || m.GetCounter().GetValue() != want {
			got := m.GetCounter().GetValue()
			t.Errorf("eosproc_dead_letters_total{stage=%q} = %v, want %v (%v)", stage, got, want, err)
		}
	}
}

// With StopOnBadRecord (errors.tolerance=none) the loop stops at a record it would dead-letter, naming it, and
// its batch never begins a transaction; the batch before it is committed.
func TestStopOnBadRecordStopsBeforeTheBatchsTransaction(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 0), rec(0, 1)}, {rec(0, 2), rec(0, 3)}}, stop: cancel}
	p := &fakeProducer{}
	c.producer = p
	transform := func(ctx context.Context, in stream.Record) ([]stream.Record, error) {
		if in.Offset == 3 {
			return nil, errors.New("cannot parse value")
		}
		return stream.Identity(ctx, in)
	}
	l := &Loop{Consumer: c, Producer: p, Transform: transform, OutputTopic: "out", DeadLetterTopic: "dlq", StopOnBadRecord: true}
	err := l.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "in/0/3") || !strings.Contains(err.Error(), "cannot parse value") {
		t.Fatalf("Run = %v, want an error naming record in/0/3 and its error", err)
	}
	if len(p.offsets) != 1 || !maps.Equal(p.offsets[0], map[stream.TopicPartition]int64{p0: 2}) {
		t.Errorf("offsets sent %v, want only the first batch's (in/0 up to 2)", p.offsets)
	}
	for _, r := range p.produced {
		if r.Topic != "out" || header(r, stream.SourceHeader) == "in/0/2" || header(r, stream.SourceHeader) == "in/0/3" {
			t.Errorf("produced %+v: want only the first batch's outputs", r)
		}
	}
}

// A transform failing on every record logs at most one line a second per stage, with the records since the last.
func TestDeadLettersAreLoggedAtMostOnceASecondPerStage(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var d deadLetterLog
	fail := failure{StageTransform, ClassError, errors.New("bad")}
	for i := range 1000 {
		d.note(log, fail, rec(0, int64(i)))
	}
	d.note(log, failure{StageSize, ClassTooLarge, errors.New("big")}, rec(0, 1000))
	if lines := strings.Count(buf.String(), "\n"); lines != 2 {
		t.Fatalf("%d log lines for 1000 dead letters at one stage and one at another, want 2:\n%s", lines, buf.String())
	}
	d.stages[StageTransform].last = time.Now().Add(-deadLetterLogEvery) // a second later
	buf.Reset()
	d.note(log, fail, rec(0, 1001))
	if !strings.Contains(buf.String(), "records=1000") || !strings.Contains(buf.String(), "source=in/0/1001") {
		t.Errorf("log line %q: want the 999 records since the last line and this one (1000), and this one's source", buf.String())
	}
}

func TestShutdownFinishesTheBatchInFlight(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 1)}}, stop: func() {}}
	p := &fakeProducer{}
	c.producer = p
	transform := func(ctx context.Context, in stream.Record) ([]stream.Record, error) {
		cancel() // SIGTERM arrives while the batch is being transformed
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return stream.Identity(ctx, in)
	}
	l := &Loop{Consumer: c, Producer: p, Transform: transform, OutputTopic: "out"}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []string{"init", "begin", "produce", "send_offsets", "commit"}; !slices.Equal(p.calls, want) {
		t.Errorf("calls = %v, want %v", p.calls, want)
	}
}

func TestShutdownDropsABatchThatOutlivesTheTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 1)}}, stop: func() {}}
	p := &fakeProducer{}
	c.producer = p
	transform := func(ctx context.Context, in stream.Record) ([]stream.Record, error) {
		cancel()
		<-ctx.Done() // a transform slower than the shutdown timeout
		return nil, ctx.Err()
	}
	l := &Loop{Consumer: c, Producer: p, Transform: transform, OutputTopic: "out", ShutdownTimeout: time.Millisecond}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []string{"init"}; !slices.Equal(p.calls, want) {
		t.Errorf("calls = %v, want %v: the record must not be dead-lettered for our lack of time", p.calls, want)
	}
	if c.rewinds != 0 {
		t.Errorf("rewinds = %d, want 0 when shutting down", c.rewinds)
	}
}

func TestUnlimitedBudgetGivesEveryAssignedPartitionTheWholeBatch(t *testing.T) {
	got := Unlimited{MaxRecords: 100}.Budgets(map[stream.TopicPartition]int64{p0: 5, p1: -1}, time.Second)
	if want := (map[stream.TopicPartition]int64{p0: 100, p1: 100}); !maps.Equal(got, want) {
		t.Errorf("budgets = %v, want %v", got, want)
	}
}

func TestBackoffIsExponentialAndBounded(t *testing.T) {
	l := &Loop{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	var got []time.Duration
	for a := range 6 {
		got = append(got, l.backoff(a))
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	if !slices.Equal(got, want) {
		t.Errorf("backoff = %v, want %v", got, want)
	}
}

func header(r stream.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// emptyChangelog restores nothing: every store starts empty.
type emptyChangelog struct{}

func (emptyChangelog) Restore(context.Context, string, int32, func(key, value []byte) error) (int, error) {
	return 0, nil
}

// TestDuplicatesAreDroppedAndTheirStateRollsBackWithTheTransaction: a duplicate produces nothing but its offset
// is committed; the store's changes go to the changelog in the same transaction; when that transaction aborts,
// the store forgets them, so the batch read again is judged afresh rather than as all duplicates.
func TestDuplicatesAreDroppedAndTheirStateRollsBackWithTheTransaction(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dup := rec(0, 6)
	dup.Key = []byte("k4") // the same identity as offset 4
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4), rec(0, 5), dup}}, stop: cancel}
	p := &fakeProducer{fail: map[string][]error{"commit": {classed(produce.Abortable, "transaction timed out")}}}
	c.producer = p
	stage := &dedupe.Stage{ChangelogTopic: func(in string) string { return in + "-changelog" }, Restorer: emptyChangelog{}}
	l := &Loop{Consumer: c, Producer: p, Dedupe: stage, OutputTopic: "out", DeadLetterTopic: "dlq",
		MinBackoff: time.Microsecond, MaxBackoff: time.Millisecond}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"init",
		"begin", "produce", "produce", "produce_changelog", "produce_changelog", "send_offsets", "commit", "flush", "abort",
		"begin", "produce", "produce", "produce_changelog", "produce_changelog", "send_offsets", "commit"}
	if !slices.Equal(p.calls, want) {
		t.Fatalf("calls\n got %v\nwant %v", p.calls, want)
	}
	if !slices.EqualFunc(p.offsets, []map[stream.TopicPartition]int64{{p0: 7}, {p0: 7}}, maps.Equal) {
		t.Errorf("offsets %v: the duplicate's offset must be committed too", p.offsets)
	}
	for _, r := range p.produced[len(p.produced)-2:] {
		if r.Topic != "in-changelog" || r.Partition != 0 || len(r.Value) != 8 {
			t.Errorf("changelog record %+v: want topic in-changelog, partition 0 and an 8-byte timestamp", r)
		}
	}
}

// gatedRestore restores nothing, once its gate is closed.
type gatedRestore struct{ gate chan struct{} }

func (g gatedRestore) Restore(ctx context.Context, _ string, _ int32, _ func(key, value []byte) error) (int, error) {
	select {
	case <-g.gate:
		return 0, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// TestARestoringPartitionIsHeldWhileTheOthersGoOn: a partition whose de-duplication state is still being read from
// its changelog gets no budget, so its records wait in the consumer while the loop goes on polling (and the other
// partitions committing), instead of one batch waiting inside the filter for a restore that can take minutes.
// Once restored, the partition gets its budget and its records their transaction.
func TestARestoringPartitionIsHeldWhileTheOthersGoOn(t *testing.T) {
	// Bounded: a loop that waited for the restore inside the batch would never poll the third time.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gate := make(chan struct{})
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4), rec(0, 5)}}, stop: cancel, withinBudgets: true}
	c.assembling = func(n int) {
		if n == 3 {
			close(gate) // the loop polled twice meanwhile
		}
	}
	p := &fakeProducer{}
	c.producer = p
	stage := &dedupe.Stage{ChangelogTopic: func(in string) string { return in + "-changelog" }, Restorer: gatedRestore{gate}}
	l := &Loop{Consumer: c, Producer: p, Dedupe: stage, OutputTopic: "out", DeadLetterTopic: "dlq",
		ShutdownTimeout: time.Second}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() == context.DeadlineExceeded {
		t.Fatal("the loop did not finish within 10 s")
	}
	for i, b := range c.budgets[:2] {
		if n, ok := b[p0]; ok {
			t.Errorf("Assemble %d: budget %d for %s while its state is restored; want none", i+1, n, p0)
		}
	}
	if !slices.ContainsFunc(c.budgets, func(b map[stream.TopicPartition]int64) bool { return b[p0] > 0 }) {
		t.Errorf("%s never got a budget after its restore (budgets %v)", p0, c.budgets)
	}
	// The partition whose position is not known yet (lag -1) gets none either: its restore waits for it.
	for i, b := range c.budgets {
		if _, ok := b[stream.TopicPartition{Topic: "in", Partition: 1}]; ok {
			t.Errorf("Assemble %d: a budget for in/1, whose position is unknown", i+1)
		}
	}
	if !slices.Equal(p.calls, []string{"init", "begin", "produce", "produce", "produce_changelog", "produce_changelog", "send_offsets", "commit"}) {
		t.Errorf("calls %v: want one transaction with both records", p.calls)
	}
}

func TestInputRanges(t *testing.T) {
	tests := []struct {
		in   []stream.Record
		want string
	}{
		{nil, ""},
		{[]stream.Record{rec(0, 5)}, "in/0:[5,6)"},
		// Carried records can come before earlier-polled ones; the range still spans them all.
		{[]stream.Record{rec(1, 9), rec(0, 12), rec(0, 10), rec(1, 3)}, "in/0:[10,13) in/1:[3,10)"},
	}
	for _, tt := range tests {
		if got := inputRanges(tt.in); got != tt.want {
			t.Errorf("inputRanges = %q, want %q", got, tt.want)
		}
	}
}

func refusedErr() error {
	return &produce.Error{Op: "produce to out", Class: produce.Abortable,
		Err: fmt.Errorf("%w: %w", produce.ErrRecordRefused, kafka.NewError(kafka.ErrMsgSizeTooLarge, "too large", false))}
}

func TestRefusedOutputDeadLettersItsInputOnTheRedo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4), rec(0, 5), rec(0, 6), rec(0, 7)}}, stop: cancel}
	p := &fakeProducer{fail: map[string][]error{"produce": {nil, refusedErr(), nil, refusedErr()}}}
	c.producer = p
	l := &Loop{Consumer: c, Producer: p, OutputTopic: "out", DeadLetterTopic: "dlq", MinBackoff: time.Millisecond}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if c.rewinds != 1 || !slices.Contains(p.calls, "abort") {
		t.Fatalf("rewinds %d, calls %v: want the refused batch aborted and rewound once", c.rewinds, p.calls)
	}
	// The aborted attempt offered every record, so one redo deals with both refused ones: it produces 4 and 6
	// and dead-letters 5 and 7.
	redo := p.produced[2:]
	var got []string
	for _, r := range redo {
		got = append(got, r.Topic+":"+header(r, stream.SourceHeader))
	}
	want := []string{"out:in/0/4", "out:in/0/6", "dlq:in/0/5", "dlq:in/0/7"}
	if !slices.Equal(got, want) {
		t.Fatalf("redo produced %v, want %v", got, want)
	}
	if reason := header(redo[2], HeaderError); !strings.Contains(reason, "refused") || !strings.Contains(reason, "too large") {
		t.Errorf("dead letter reason %q does not say the output was refused and why", reason)
	}
	if len(p.offsets) == 0 {
		t.Fatal("no offsets sent for the redone batch")
	}
	if last := p.offsets[len(p.offsets)-1]; last[stream.TopicPartition{Topic: "in", Partition: 0}] != 8 {
		t.Errorf("offsets sent with the redo = %v, want in/0 at 8", last)
	}
	if len(l.refused) != 0 {
		t.Errorf("refused sources kept after their batch committed: %v", l.refused)
	}
}

// TestABatchIsWrittenAChunkAtATimeAndEveryRefusalFoundInOneAttempt: a batch larger than writeChunk is handed to
// the producer a chunk at a time (so that its outputs are never all in memory at once), and the chunks after one
// with a refused output are still offered, so that one redo deals with refusals in every chunk.
func TestABatchIsWrittenAChunkAtATimeAndEveryRefusalFoundInOneAttempt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 2*writeChunk + 10
	batch := make([]stream.Record, n)
	for i := range batch {
		batch[i] = rec(0, int64(i))
	}
	refusedAt := []int{1, writeChunk + 5, 2*writeChunk + 3}
	script := make([]error, n)
	for _, i := range refusedAt {
		script[i] = refusedErr()
	}
	c := &fakeConsumer{batches: [][]stream.Record{batch}, stop: cancel}
	p := &fakeProducer{fail: map[string][]error{"produce": script}}
	c.producer = p
	l := &Loop{Consumer: c, Producer: p, OutputTopic: "out", DeadLetterTopic: "dlq", MinBackoff: time.Millisecond}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if c.rewinds != 1 {
		t.Fatalf("rewinds %d, want the batch redone once for all of its refused outputs", c.rewinds)
	}
	if p.largest > writeChunk {
		t.Errorf("%d records handed over in one call, want at most a chunk (%d)", p.largest, writeChunk)
	}
	redo := p.produced[n-len(refusedAt):]
	var dead []string
	for _, r := range redo {
		if r.Topic == "dlq" {
			dead = append(dead, header(r, stream.SourceHeader))
		}
	}
	want := []string{"in/0/1", fmt.Sprintf("in/0/%d", writeChunk+5), fmt.Sprintf("in/0/%d", 2*writeChunk+3)}
	if !slices.Equal(dead, want) || len(redo) != n {
		t.Fatalf("redo produced %d records, dead letters %v; want %d records, dead letters %v", len(redo), dead, n, want)
	}
}

// TestTheNextBatchIsPreparedOnlyOnceTheTransactionHandedItsBatchOver: the transaction prepares its batch a chunk
// at a time on its own goroutine, and the next batch's first chunk is prepared on the loop's: the two must not
// prepare at once (the transform and the identity writer are used one goroutine at a time; -race catches it).
func TestTheNextBatchIsPreparedOnlyOnceTheTransactionHandedItsBatchOver(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var batches [][]stream.Record
	for b := range 3 {
		batch := make([]stream.Record, 2*writeChunk+1)
		for i := range batch {
			batch[i] = rec(int32(b), int64(i))
		}
		batches = append(batches, batch)
	}
	c := &fakeConsumer{batches: batches, stop: cancel}
	p := &fakeProducer{}
	c.producer = p
	l := &Loop{Consumer: c, Producer: p, OutputTopic: "out", DeadLetterTopic: "dlq", MinBackoff: time.Millisecond}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, batch := range batches {
		for _, r := range batch {
			want = append(want, r.Source())
		}
	}
	var got []string
	for _, r := range p.produced {
		got = append(got, header(r, stream.SourceHeader))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("produced %d records, want the %d inputs' outputs in order", len(got), len(want))
	}
}

func TestRefusedDeadLetterIsFatal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4), rec(0, 5)}}, stop: cancel}
	p := &fakeProducer{fail: map[string][]error{"produce": {nil, refusedErr()}}}
	c.producer = p
	failOn5 := func(ctx context.Context, in stream.Record) ([]stream.Record, error) {
		if in.Offset == 5 {
			return nil, errors.New("cannot parse")
		}
		return stream.Identity(ctx, in)
	}
	l := &Loop{Consumer: c, Producer: p, Transform: failOn5, OutputTopic: "out", DeadLetterTopic: "dlq"}
	err := l.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "dead letter refused") || !errors.Is(err, produce.ErrRecordRefused) {
		t.Fatalf("Run = %v, want a fatal error saying the dead letter was refused", err)
	}
}

func TestBatchOfAnEndedSessionIsAbortedAndReadAgain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}, {rec(1, 9)}}, stop: cancel,
		groupErrs: []error{consume.ErrAssignmentLost}}
	p := &fakeProducer{}
	c.producer = p
	l := &Loop{Consumer: c, Producer: p, OutputTopic: "out", MinBackoff: time.Microsecond, MaxBackoff: time.Millisecond}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	// The first attempt sends no offsets and is aborted, and the input is rewound: were the partitions still
	// ours without a lost-assignment callback, skipping the rewind would skip the batch (and the one assembled
	// beside its transaction) for good.
	if c.rewinds != 1 {
		t.Errorf("rewinds = %d, want 1", c.rewinds)
	}
	if got := strings.Join(p.calls, ","); got != "init,begin,produce,flush,abort,begin,produce,send_offsets,commit,begin,produce,send_offsets,commit" {
		t.Errorf("producer calls %s, want the first attempt's outputs delivered, then aborted before its offsets, then a transaction for each batch", got)
	}
	if len(p.produced) != 3 || header(p.produced[1], stream.SourceHeader) != "in/0/4" || header(p.produced[2], stream.SourceHeader) != "in/1/9" {
		t.Errorf("produced %+v, want in/0/4 (aborted), then in/0/4 and in/1/9", p.produced)
	}
}

// An output above the producer's message.max.bytes, or too large for its topic's max.message.bytes in a record
// batch of its own, dead-letters its input before the transaction, with none of its outputs.
func TestOutputAboveALimitDeadLettersItsInput(t *testing.T) {
	for _, tt := range []struct {
		name           string
		maxRecordBytes int
		topicMaxBytes  map[string]int
		reason         string
	}{
		{"producer's message.max.bytes", 200, nil, "message.max.bytes (200)"},
		{"output topic's max.message.bytes", 0, map[string]int{"out": 250, "dlq": 10_000},
			`output too large for topic "out": 364 bytes with headers, 425 in a record batch, above the topic's max.message.bytes (250)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4), rec(0, 5), rec(0, 6)}}, stop: cancel}
			p := &fakeProducer{}
			c.producer = p
			// Record 5 becomes two outputs, one of them too large: neither may be produced.
			grow := func(ctx context.Context, in stream.Record) ([]stream.Record, error) {
				if in.Offset == 5 {
					return []stream.Record{{Value: []byte("small")}, {Value: make([]byte, 300)}}, nil
				}
				return stream.Identity(ctx, in)
			}
			l := &Loop{Consumer: c, Producer: p, Transform: grow, OutputTopic: "out", DeadLetterTopic: "dlq",
				MaxRecordBytes: tt.maxRecordBytes, TopicMaxBytes: tt.topicMaxBytes}
			if err := l.Run(ctx); err != nil {
				t.Fatal(err)
			}
			if c.rewinds != 0 || slices.Contains(p.calls, "abort") {
				t.Errorf("rewinds %d, calls %v: an oversized output must be caught before the transaction", c.rewinds, p.calls)
			}
			var got []string
			for _, r := range p.produced {
				got = append(got, r.Topic+":"+header(r, stream.SourceHeader))
			}
			if want := []string{"out:in/0/4", "out:in/0/6", "dlq:in/0/5"}; !slices.Equal(got, want) {
				t.Fatalf("produced %v, want %v", got, want)
			}
			if reason := header(p.produced[2], HeaderError); !strings.Contains(reason, tt.reason) {
				t.Errorf("dead letter reason %q does not name the limit (%q)", reason, tt.reason)
			}
		})
	}
}

// A dead letter too large for the dead-letter topic would be refused on every redo: the loop stops, saying which.
func TestDeadLetterAboveItsTopicsLimitStopsTheLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}}, stop: cancel}
	p := &fakeProducer{}
	c.producer = p
	fail := func(context.Context, stream.Record) ([]stream.Record, error) { return nil, errors.New("bad record") }
	l := &Loop{Consumer: c, Producer: p, Transform: fail, OutputTopic: "out", DeadLetterTopic: "dlq",
		TopicMaxBytes: map[string]int{"dlq": 100}}
	err := l.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), `dead letter of in/0/4`) || !strings.Contains(err.Error(), `dead-letter topic "dlq"'s max.message.bytes (100)`) {
		t.Fatalf("Run = %v, want a fatal error naming the dead letter and the topic's limit", err)
	}
	if len(p.produced) != 0 {
		t.Errorf("produced %d records, want none", len(p.produced))
	}
}

// TestNextBatchIsAssembledBesideTheTransactionAndARevocationWaitsForIt: batch 2 is polled while batch 1's
// transaction is still open (the commit is held until then), and a revocation during that poll returns only once
// batch 1 has committed, so the partition's next owner reads offsets that include it.
func TestNextBatchIsAssembledBesideTheTransactionAndARevocationWaitsForIt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}, {rec(0, 5)}}, stop: cancel}
	p := &fakeProducer{commitGate: make(chan struct{})}
	c.producer = p
	var committedAtRevoke int64 = -1
	c.assembling = func(n int) {
		if n != 2 {
			return
		}
		close(p.commitGate) // batch 1's commit goes on only now that batch 2 is being assembled
		c.barrier(nil)      // a revocation arrives
		committedAtRevoke = p.commits.Load()
	}
	l := &Loop{Consumer: c, Producer: p, OutputTopic: "out", MinBackoff: time.Microsecond, MaxBackoff: time.Millisecond}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(p.calls, "gate timed out") {
		t.Fatalf("calls %v: batch 2 was not assembled while batch 1's transaction was open", p.calls)
	}
	if committedAtRevoke != 1 {
		t.Errorf("transactions committed when the revocation went on = %d, want 1: it must wait for the one in flight", committedAtRevoke)
	}
	if !slices.EqualFunc(p.offsets, []map[stream.TopicPartition]int64{{p0: 5}, {p0: 6}}, maps.Equal) {
		t.Errorf("offsets %v, want batch 1 then batch 2", p.offsets)
	}
}

// TestAbortRewindsTheBatchAssembledBesideIt: batch 1's transaction aborts after batch 2 was assembled; batch 2 is
// dropped unproduced and both are read again, in order.
func TestAbortRewindsTheBatchAssembledBesideIt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}, {rec(0, 5)}}, stop: cancel}
	p := &fakeProducer{commitGate: make(chan struct{}), fail: map[string][]error{"commit": {classed(produce.Abortable, "transaction aborted by broker")}}}
	c.producer = p
	c.assembling = func(n int) {
		if n == 2 {
			close(p.commitGate) // batch 2 is assembled before batch 1's commit fails
		}
	}
	l := &Loop{Consumer: c, Producer: p, OutputTopic: "out", MinBackoff: time.Microsecond, MaxBackoff: time.Millisecond}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(p.calls, "gate timed out") {
		t.Fatalf("calls %v: batch 2 was not assembled while batch 1's transaction was open", p.calls)
	}
	if c.rewinds != 1 {
		t.Errorf("rewinds = %d, want 1", c.rewinds)
	}
	var sources []string
	for _, r := range p.produced {
		sources = append(sources, header(r, stream.SourceHeader))
	}
	if want := []string{"in/0/4", "in/0/4", "in/0/5"}; !slices.Equal(sources, want) {
		t.Errorf("produced %v, want %v: the aborted batch, then both batches in order", sources, want)
	}
	if !slices.EqualFunc(p.offsets, []map[stream.TopicPartition]int64{{p0: 5}, {p0: 5}, {p0: 6}}, maps.Equal) {
		t.Errorf("offsets %v, want batch 1 (aborted), batch 1, batch 2", p.offsets)
	}
}

// TestStateOfPartitionsThatMovedAwayDoesNotAccumulate: the consumer's list of revoked partitions is drained by
// every batch, with or without de-duplication, and what the loop remembers of a partition (inputs whose output
// was refused) goes when the partition does.
func TestStateOfPartitionsThatMovedAwayDoesNotAccumulate(t *testing.T) {
	t.Run("revoked list", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		const rebalances = 5000
		c := &fakeConsumer{batches: make([][]stream.Record, rebalances), stop: cancel}
		c.producer = &fakeProducer{}
		most := 0
		c.assembling = func(n int) {
			most = max(most, len(c.revoked))
			c.revoked = append(c.revoked, stream.TopicPartition{Topic: "in", Partition: int32(n)})
		}
		l := &Loop{Consumer: c, Producer: c.producer, OutputTopic: "out"}
		if err := l.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if most > 1 {
			t.Errorf("revoked partitions waiting to be taken reached %d over %d rebalances, want at most 1", most, rebalances)
		}
	})
	t.Run("refused inputs", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}}, stop: cancel}
		p := &fakeProducer{fail: map[string][]error{"produce": {refusedErr()}}}
		c.producer = p
		c.assembling = func(n int) {
			if n == 3 { // the redo's assembly: partition 0 moves away instead
				c.revoked = append(c.revoked, p0)
				c.batches[0] = nil
			}
		}
		l := &Loop{Consumer: c, Producer: p, OutputTopic: "out", DeadLetterTopic: "dlq", MinBackoff: time.Microsecond}
		if err := l.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if c.rewinds != 1 {
			t.Fatalf("rewinds = %d, want 1: the case under test did not happen", c.rewinds)
		}
		if len(l.refused) != 0 {
			t.Errorf("refused inputs of a partition that moved away are kept: %v", l.refused)
		}
	})
}

// TestShutdownGivesUpARetriableCommitAfterTheTransactionTimeout: past the shutdown deadline a commit that keeps
// failing retriably is retried for a transaction timeout (the broker aborts the transaction by then), then
// aborted, and Run returns; it used to retry for ever, so no grace period could be computed from the settings.
func TestShutdownGivesUpARetriableCommitAfterTheTransactionTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 1)}}, stop: func() {}}
	retriable := make([]error, 1000) // more than 50ms of retries take
	for i := range retriable {
		retriable[i] = classed(produce.Retriable, "coordinator not available")
	}
	p := &fakeProducer{fail: map[string][]error{"commit": retriable}}
	c.producer = p
	transform := func(ctx context.Context, in stream.Record) ([]stream.Record, error) {
		cancel() // SIGTERM while the batch is prepared
		return stream.Identity(ctx, in)
	}
	l := &Loop{Consumer: c, Producer: p, Transform: transform, OutputTopic: "out", ShutdownTimeout: time.Millisecond,
		TransactionTimeout: 50 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run still retrying the commit a minute after a shutdown with a 50ms transaction timeout")
	}
	n := 0
	for _, call := range p.calls {
		if call == "commit" {
			n++
		}
	}
	if n < 2 || p.calls[len(p.calls)-1] != "abort" {
		t.Errorf("calls %v: want the commit retried, then the transaction aborted", p.calls)
	}
}

func TestSerialLoopAssemblesOnlyOnceTheTransactionSettled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}, {rec(0, 5)}}, stop: cancel}
	p := &fakeProducer{}
	c.producer = p
	var committedAtAssembly []int64
	c.assembling = func(int) { committedAtAssembly = append(committedAtAssembly, p.commits.Load()) }
	l := &Loop{Consumer: c, Producer: p, OutputTopic: "out", Serial: true}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []int64{0, 1, 2}; !slices.Equal(committedAtAssembly, want) {
		t.Errorf("transactions committed when each assembly began = %v, want %v", committedAtAssembly, want)
	}
}

// TestABatchIsHeldWhileTheTransactionItWaitsForRuns: the consumer's batch hold reports true while the previous
// batch's transaction runs and false once it has committed, so that a batch past its interval keeps collecting
// instead of the loop idling; the serial loop sets none.
func TestABatchIsHeldWhileTheTransactionItWaitsForRuns(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}, {rec(0, 5)}}, stop: cancel}
	p := &fakeProducer{commitGate: make(chan struct{})}
	c.producer = p
	var during, after bool
	c.assembling = func(n int) {
		if n != 2 {
			return
		}
		during = c.hold()
		close(p.commitGate)
		c.barrier(nil)
		after = c.hold()
	}
	l := &Loop{Consumer: c, Producer: p, OutputTopic: "out"}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if !during || after {
		t.Errorf("hold while the transaction ran = %v, after it committed = %v; want true, then false", during, after)
	}

	serial := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}}, stop: func() {}}
	serial.producer = &fakeProducer{}
	sctx, scancel := context.WithCancel(context.Background())
	serial.stop = scancel
	if err := (&Loop{Consumer: serial, Producer: serial.producer, OutputTopic: "out", Serial: true}).Run(sctx); err != nil {
		t.Fatal(err)
	}
	if serial.hold != nil {
		t.Error("the serial loop set a batch hold")
	}
}

func TestSummarizeCountsAndEndsEachPartition(t *testing.T) {
	offsets, perPartition := summarize([]stream.Record{rec(0, 10), rec(0, 11), rec(1, 3), rec(0, 12), rec(1, 2)})
	if want := (map[stream.TopicPartition]int64{p0: 13, p1: 4}); !maps.Equal(offsets, want) {
		t.Errorf("offsets = %v, want %v", offsets, want)
	}
	if want := (map[stream.TopicPartition]int64{p0: 3, p1: 2}); !maps.Equal(perPartition, want) {
		t.Errorf("records per partition = %v, want %v", perPartition, want)
	}
}

// TestRecordsAreWrittenWhileTheirBatchAssembles: once the previous transaction has committed, the batch being
// assembled begins its own and writes each record as it arrives, so that its end leaves only the offsets and
// the commit (exactly_once), or the flush and the offset commit (at_least_once); before that, its records wait.
func TestRecordsAreWrittenWhileTheirBatchAssembles(t *testing.T) {
	for _, atLeastOnce := range []bool{false, true} {
		t.Run(fmt.Sprintf("at_least_once=%v", atLeastOnce), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}, {rec(0, 5), rec(1, 7), rec(0, 6)}}, stop: cancel, chunked: true}
			p := &fakeProducer{commitGate: make(chan struct{})}
			c.producer = p
			if atLeastOnce {
				c.commitGate = p.commitGate // at_least_once commits offsets instead of a transaction
			}
			var writtenBefore []int
			c.beforeRecord = func(assembly, i int) {
				if assembly != 2 {
					return
				}
				if i == 1 {
					// Batch 1's transaction is held open while batch 2's first record arrives: it waits. Then
					// batch 1 commits.
					writtenBefore = append(writtenBefore, len(p.produced))
					close(p.commitGate)
					c.barrier(nil)
				}
				writtenBefore = append(writtenBefore, len(p.produced))
			}
			l := &Loop{Consumer: c, Producer: p, OutputTopic: "out", AtLeastOnce: atLeastOnce,
				MinBackoff: time.Microsecond, MaxBackoff: time.Millisecond}
			if err := l.Run(ctx); err != nil {
				t.Fatal(err)
			}
			// Before record 0 and 1 of batch 2: batch 1's record only. Once batch 1 committed, record 1 finds
			// batch 2's first record still waiting; before record 2, both are written.
			if want := []int{1, 1, 1, 3}; !slices.Equal(writtenBefore, want) {
				t.Errorf("records written before each of batch 2's records arrived = %v, want %v", writtenBefore, want)
			}
			wantCalls := []string{"init", "begin", "produce", "send_offsets", "commit", "begin", "produce", "produce", "produce", "send_offsets", "commit"}
			gotOffsets := p.offsets
			if atLeastOnce {
				wantCalls = []string{"init", "begin", "produce", "flush", "begin", "produce", "produce", "produce", "flush"}
				gotOffsets = c.committed
			}
			if !slices.Equal(p.calls, wantCalls) {
				t.Errorf("calls\n got %v\nwant %v", p.calls, wantCalls)
			}
			if want := []map[stream.TopicPartition]int64{{p0: 5}, {p0: 7, p1: 8}}; !slices.EqualFunc(gotOffsets, want, maps.Equal) {
				t.Errorf("offsets %v, want %v", gotOffsets, want)
			}
		})
	}
}

// TestARevocationAbortsTheOpenTransactionOnlyIfItHoldsThePartition: a partition revoked while the batch being
// assembled has written records of it in its open transaction takes that transaction down (committed, those
// records would be written again by the partition's next owner), and the other partitions are read again from
// their committed offsets; a partition none of whose records were written yet only loses its unwritten records.
func TestARevocationAbortsTheOpenTransactionOnlyIfItHoldsThePartition(t *testing.T) {
	tests := []struct {
		name         string
		batch2       []stream.Record
		wantSources  []string
		wantOffsets  []map[stream.TopicPartition]int64
		wantRewinds  int
		wantRevokeAb float64
	}{
		{
			name:        "written",
			batch2:      []stream.Record{rec(0, 5), rec(1, 7), rec(0, 6)},
			wantSources: []string{"in/0/4", "in/0/5", "in/1/7"}, // in/0/5 with the aborted transaction
			wantOffsets: []map[stream.TopicPartition]int64{{p0: 5}, {p1: 8}},
			wantRewinds: 1, wantRevokeAb: 1,
		},
		{
			name:        "not written",
			batch2:      []stream.Record{rec(1, 7), rec(0, 5), rec(0, 6)},
			wantSources: []string{"in/0/4", "in/1/7"},
			wantOffsets: []map[stream.TopicPartition]int64{{p0: 5}, {p1: 8}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}, tt.batch2}, stop: cancel, chunked: true}
			p := &fakeProducer{}
			c.producer = p
			c.beforeRecord = func(assembly, i int) {
				if assembly == 2 && i == 0 {
					c.barrier(nil) // batch 1 commits before batch 2's records arrive: they are written at once
				}
				if assembly == 2 && i == 1 {
					c.revokeNow(p0)
				}
			}
			l := &Loop{Consumer: c, Producer: p, OutputTopic: "out", MinBackoff: time.Microsecond, MaxBackoff: time.Millisecond}
			if err := l.Run(ctx); err != nil {
				t.Fatal(err)
			}
			var sources []string
			for _, r := range p.produced {
				sources = append(sources, header(r, stream.SourceHeader))
			}
			if !slices.Equal(sources, tt.wantSources) {
				t.Errorf("produced %v, want %v", sources, tt.wantSources)
			}
			if !slices.EqualFunc(p.offsets, tt.wantOffsets, maps.Equal) {
				t.Errorf("offsets %v, want %v", p.offsets, tt.wantOffsets)
			}
			if c.rewinds != tt.wantRewinds || slices.Contains(p.calls, "abort") != (tt.wantRewinds > 0) {
				t.Errorf("rewinds = %d, calls %v; want %d rewinds, and an abort only with them", c.rewinds, p.calls, tt.wantRewinds)
			}
			var m dto.Metric
			if err := l.Metrics.aborts.WithLabelValues("revoked").Write(&m); err != nil || m.GetCounter().GetValue() != tt.wantRevokeAb {
				t.Errorf("transactions aborted for a revocation = %v, want %v (%v)", m.GetCounter().GetValue(), tt.wantRevokeAb, err)
			}
		})
	}
}

// TestARecordNotToleratedAbortsTheTransactionItsBatchBegan: with errors not tolerated, a bad record that arrives
// after its batch began writing stops the loop, and the open transaction with its records is aborted, not left
// to time out.
func TestARecordNotToleratedAbortsTheTransactionItsBatchBegan(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}, {rec(0, 5), rec(0, 6)}}, stop: cancel, chunked: true}
	p := &fakeProducer{}
	c.producer = p
	c.beforeRecord = func(assembly, i int) {
		if assembly == 2 && i == 0 {
			c.barrier(nil)
		}
	}
	transform := func(ctx context.Context, r stream.Record) ([]stream.Record, error) {
		if r.Offset == 6 {
			return nil, errors.New("cannot parse value")
		}
		return stream.Identity(ctx, r)
	}
	l := &Loop{Consumer: c, Producer: p, Transform: transform, OutputTopic: "out", DeadLetterTopic: "dlq", StopOnBadRecord: true}
	err := l.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "record in/0/6 failed") {
		t.Fatalf("Run = %v, want the error naming in/0/6", err)
	}
	if want := []string{"init", "begin", "produce", "send_offsets", "commit", "begin", "produce", "flush", "abort"}; !slices.Equal(p.calls, want) {
		t.Errorf("calls\n got %v\nwant %v", p.calls, want)
	}
}

// TestARefusedOutputWrittenDuringAssemblyIsDeadLetteredOnTheRedo: an output the producer refuses for itself
// while its batch is written during the assembly aborts the batch once, like one refused at the batch's end, and
// the redo dead-letters its input instead of being refused again and again.
func TestARefusedOutputWrittenDuringAssemblyIsDeadLetteredOnTheRedo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}, {rec(0, 5)}}, stop: cancel, chunked: true}
	p := &fakeProducer{fail: map[string][]error{"produce": {nil, refusedErr()}}}
	c.producer = p
	c.beforeRecord = func(assembly, i int) {
		if assembly == 2 {
			c.barrier(nil) // batch 1 commits first: batch 2's record is written as it arrives
		}
	}
	l := &Loop{Consumer: c, Producer: p, OutputTopic: "out", DeadLetterTopic: "dlq", MinBackoff: time.Microsecond, MaxBackoff: time.Millisecond}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if c.rewinds != 1 {
		t.Errorf("rewinds = %d, want 1", c.rewinds)
	}
	last := p.produced[len(p.produced)-1]
	if last.Topic != "dlq" || header(last, stream.SourceHeader) != "in/0/5" || header(last, HeaderErrorStage) != StageProduce {
		t.Errorf("last record written %s from %s (stage %q), want in/0/5's dead letter", last.Topic, header(last, stream.SourceHeader), header(last, HeaderErrorStage))
	}
	if want := []map[stream.TopicPartition]int64{{p0: 5}, {p0: 6}}; !slices.EqualFunc(p.offsets, want, maps.Equal) {
		t.Errorf("offsets %v, want %v", p.offsets, want)
	}
}

// TestAConsumerFailureAbortsTheTransactionItsBatchBegan: when the consumer fails for good after the batch being
// assembled began writing, its transaction is aborted before the loop returns the error, instead of holding the
// output's read_committed readers back until the broker times it out.
func TestAConsumerFailureAbortsTheTransactionItsBatchBegan(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}, {rec(0, 5), rec(0, 6)}}, stop: cancel, chunked: true}
	p := &fakeProducer{}
	c.producer = p
	c.beforeRecord = func(assembly, i int) {
		switch {
		case assembly == 2 && i == 0:
			c.barrier(nil)
		case assembly == 2 && i == 1:
			c.failNow = errors.New("consumer fenced")
		}
	}
	l := &Loop{Consumer: c, Producer: p, OutputTopic: "out"}
	if err := l.Run(ctx); err == nil || !strings.Contains(err.Error(), "consumer fenced") {
		t.Fatalf("Run = %v, want the consumer's error", err)
	}
	if want := []string{"init", "begin", "produce", "send_offsets", "commit", "begin", "produce", "flush", "abort"}; !slices.Equal(p.calls, want) {
		t.Errorf("calls\n got %v\nwant %v", p.calls, want)
	}
}

// TestWithDeduplicationARevocationHoldsTheRestOfTheBatchBack: with de-duplication, once a partition was revoked
// during the assembly nothing more is written before the batch ends, when the revoked partitions' stores are
// dropped: a partition assigned back meanwhile is judged by its restored state, not the one it had.
func TestWithDeduplicationARevocationHoldsTheRestOfTheBatchBack(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}, {rec(1, 7), rec(1, 8), rec(1, 9)}}, stop: cancel, chunked: true}
	p := &fakeProducer{}
	c.producer = p
	var writtenBefore []int
	c.beforeRecord = func(assembly, i int) {
		if assembly != 2 {
			return
		}
		if i == 0 {
			c.barrier(nil)
		}
		if i == 1 {
			c.revokeNow(p0) // none of its records in this batch: the transaction stays
		}
		writtenBefore = append(writtenBefore, len(p.produced))
	}
	stage := &dedupe.Stage{ChangelogTopic: func(in string) string { return in + "-changelog" }, Restorer: emptyChangelog{}}
	l := &Loop{Consumer: c, Producer: p, Dedupe: stage, OutputTopic: "out", MinBackoff: time.Microsecond, MaxBackoff: time.Millisecond}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	// Batch 1 wrote its output and changelog record, and in/1/7 its own as it arrived; after the revocation
	// nothing more until the batch ended.
	if want := []int{2, 4, 4}; !slices.Equal(writtenBefore, want) {
		t.Errorf("records written before each of batch 2's records arrived = %v, want %v", writtenBefore, want)
	}
	if want := []map[stream.TopicPartition]int64{{p0: 5}, {p1: 10}}; !slices.EqualFunc(p.offsets, want, maps.Equal) {
		t.Errorf("offsets %v, want %v", p.offsets, want)
	}
	if n := len(p.produced); n != 8 {
		t.Errorf("%d records written, want 8: four outputs, each with one changelog record", n)
	}
}

// TestTheNextTransactionBeginsOnTheAlternateWhileThePreviousCommits: with an alternate producer, batch 2 begins
// its transaction on it and writes as soon as batch 1's records are delivered, while batch 1 still commits; its
// offsets go only after batch 1's commit, and the transactions alternate. A revocation of a partition batch 2 has
// written still waits for batch 1 and then aborts batch 2's transaction, on the alternate.
func TestTheNextTransactionBeginsOnTheAlternateWhileThePreviousCommits(t *testing.T) {
	for _, revoke := range []bool{false, true} {
		t.Run(fmt.Sprintf("revoke=%v", revoke), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}, {rec(0, 5), rec(1, 7), rec(0, 6)}, {rec(1, 8)}}, stop: cancel, chunked: true}
			atGate := make(chan struct{})
			p := &fakeProducer{commitGate: make(chan struct{}), atGate: atGate}
			alt := &fakeProducer{}
			c.producer, c.alternate = p, alt
			var writtenBefore []int
			var committedAtRevoke int64 = -1
			c.beforeRecord = func(assembly, i int) {
				if assembly != 2 {
					return
				}
				switch i {
				case 0:
					<-atGate // batch 1's offsets are sent and its records delivered; its commit waits
				case 1:
					writtenBefore = append(writtenBefore, len(alt.produced), int(p.commits.Load()))
					close(p.commitGate)
					if revoke {
						c.revokeNow(p0)
						committedAtRevoke = p.commits.Load()
					}
				}
			}
			l := &Loop{Consumer: c, Producer: p, Alternate: alt, OutputTopic: "out", MinBackoff: time.Microsecond, MaxBackoff: time.Millisecond}
			if err := l.Run(ctx); err != nil {
				t.Fatal(err)
			}
			if want := []int{1, 0}; !slices.Equal(writtenBefore, want) {
				t.Errorf("batch 2's records on the alternate, and commits, before its second record = %v, want %v: "+
					"it began while batch 1 committed", writtenBefore, want)
			}
			wantCalls := []string{"init", "begin", "produce", "send_offsets", "flush", "commit", "begin", "produce", "send_offsets", "flush", "commit"}
			wantAltCalls := []string{"init", "begin", "produce", "produce", "produce", "send_offsets", "flush", "commit"}
			wantOffsets := []map[stream.TopicPartition]int64{{p0: 5}, {p1: 9}}
			wantAltOffsets := []map[stream.TopicPartition]int64{{p0: 7, p1: 8}}
			if revoke {
				// Batch 2 wrote in/0/5 and is aborted; its in/1/7 is read again, on the first producer (the lanes
				// go on in turn), and batch 3 on the alternate.
				if committedAtRevoke != 1 {
					t.Errorf("transactions committed when the revocation went on = %d, want 1", committedAtRevoke)
				}
				wantAltCalls = []string{"init", "begin", "produce", "flush", "abort", "begin", "produce", "send_offsets", "flush", "commit"}
				wantOffsets = []map[stream.TopicPartition]int64{{p0: 5}, {p1: 8}}
				wantAltOffsets = []map[stream.TopicPartition]int64{{p1: 9}}
			}
			if !slices.Equal(p.calls, wantCalls) || !slices.Equal(alt.calls, wantAltCalls) {
				t.Errorf("calls\n got %v\nwant %v\nalternate's\n got %v\nwant %v", p.calls, wantCalls, alt.calls, wantAltCalls)
			}
			if !slices.EqualFunc(p.offsets, wantOffsets, maps.Equal) || !slices.EqualFunc(alt.offsets, wantAltOffsets, maps.Equal) {
				t.Errorf("offsets %v and on the alternate %v, want %v and %v", p.offsets, alt.offsets, wantOffsets, wantAltOffsets)
			}
		})
	}
}

// TestAFailedTransactionTakesTheOneBegunOnTheAlternateAlong: batch 1's commit fails after batch 2 began writing on
// the alternate; batch 2's transaction is aborted too (committed, its offsets would skip batch 1), and both
// batches are read again and written in turn.
func TestAFailedTransactionTakesTheOneBegunOnTheAlternateAlong(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}, {rec(0, 5), rec(0, 6)}}, stop: cancel, chunked: true}
	atGate := make(chan struct{})
	p := &fakeProducer{commitGate: make(chan struct{}), atGate: atGate,
		fail: map[string][]error{"commit": {classed(produce.Abortable, "transaction aborted by broker")}}}
	alt := &fakeProducer{}
	c.producer, c.alternate = p, alt
	var l *Loop
	c.beforeRecord = func(assembly, i int) {
		if assembly == 2 && c.rewinds == 0 {
			switch i {
			case 0:
				<-atGate
			case 1:
				close(p.commitGate)
				<-l.inflight.done // batch 1 has failed and aborted before batch 2's second record arrives
			}
		}
	}
	l = &Loop{Consumer: c, Producer: p, Alternate: alt, OutputTopic: "out", MinBackoff: time.Microsecond, MaxBackoff: time.Millisecond}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if c.rewinds != 1 {
		t.Errorf("rewinds = %d, want 1", c.rewinds)
	}
	wantAltCalls := []string{"init", "begin", "produce", "flush", "abort", "begin", "produce", "produce", "send_offsets", "flush", "commit"}
	if !slices.Equal(alt.calls, wantAltCalls) {
		t.Errorf("alternate's calls\n got %v\nwant %v", alt.calls, wantAltCalls)
	}
	if want := []map[stream.TopicPartition]int64{{p0: 7}}; !slices.EqualFunc(alt.offsets, want, maps.Equal) {
		t.Errorf("offsets on the alternate %v, want only batch 2's redo, %v", alt.offsets, want)
	}
	if want := []map[stream.TopicPartition]int64{{p0: 5}, {p0: 5}}; !slices.EqualFunc(p.offsets, want, maps.Equal) {
		t.Errorf("offsets %v, want batch 1 (aborted), batch 1", p.offsets)
	}
}

// TestTheAlternateIsNotUsedWithoutTransactions: at_least_once has no transaction to overlap.
func TestTheAlternateIsNotUsedWithoutTransactions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}, {rec(0, 5)}}, stop: cancel}
	p, alt := &fakeProducer{}, &fakeProducer{}
	c.producer = p
	l := &Loop{Consumer: c, Producer: p, Alternate: alt, AtLeastOnce: true, OutputTopic: "out"}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(alt.calls) != 0 || len(c.committed) != 2 {
		t.Errorf("alternate's calls %v, offset commits %v: want none, and both batches committed", alt.calls, c.committed)
	}
}

// TestAFullBatchIsWrittenOnTheAlternateWhileThePreviousCommits: a batch whose assembly ended before the
// transaction before it delivered its records is written on the alternate as soon as they are delivered, before
// that transaction's commit, not after it.
func TestAFullBatchIsWrittenOnTheAlternateWhileThePreviousCommits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &fakeConsumer{batches: [][]stream.Record{{rec(0, 4)}, {rec(0, 5), rec(1, 7)}}, stop: cancel}
	p := &fakeProducer{commitGate: make(chan struct{})}
	alt := &fakeProducer{}
	c.producer, c.alternate = p, alt
	committedAtWrite := int64(-1)
	alt.onProduce = func() {
		if committedAtWrite < 0 {
			committedAtWrite = p.commits.Load()
			close(p.commitGate)
		}
	}
	l := &Loop{Consumer: c, Producer: p, Alternate: alt, OutputTopic: "out", MinBackoff: time.Microsecond, MaxBackoff: time.Millisecond}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if committedAtWrite != 0 || slices.Contains(p.calls, "gate timed out") {
		t.Errorf("transactions committed when batch 2 was written = %d (calls %v), want 0: written beside batch 1's commit", committedAtWrite, p.calls)
	}
	if want := []string{"init", "begin", "produce", "produce", "send_offsets", "flush", "commit"}; !slices.Equal(alt.calls, want) {
		t.Errorf("alternate's calls\n got %v\nwant %v", alt.calls, want)
	}
	if !slices.EqualFunc(p.offsets, []map[stream.TopicPartition]int64{{p0: 5}}, maps.Equal) ||
		!slices.EqualFunc(alt.offsets, []map[stream.TopicPartition]int64{{p0: 6, p1: 8}}, maps.Equal) {
		t.Errorf("offsets %v and on the alternate %v, want batch 1's and batch 2's", p.offsets, alt.offsets)
	}
}
