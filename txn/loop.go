package txn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/eosproc/eosproc/consume"
	"github.com/eosproc/eosproc/dedupe"
	"github.com/eosproc/eosproc/produce"
	"github.com/eosproc/eosproc/stream"
)

// Consumer is the input side of the loop (consume.Consumer).
type Consumer interface {
	// Assigned returns the partitions this member owns now.
	Assigned() []stream.TopicPartition
	// Lags returns the unprocessed records per assigned partition, -1 where not known yet.
	Lags() map[stream.TopicPartition]int64
	// Assemble polls one batch within the budgets; revoked partitions' records are dropped inside it.
	Assemble(ctx context.Context, budgets map[stream.TopicPartition]int64, interval time.Duration, maxRecords int) ([]stream.Record, error)
	// Rewind moves every assigned partition back to its committed offset and forgets carried records.
	Rewind(ctx context.Context) error
	// GroupMetadata identifies the member and its generation to the transaction coordinator.
	GroupMetadata() (*produce.GroupMetadata, error)
	// CommitOffsets commits offsets outside any transaction (at_least_once only).
	CommitOffsets(offsets map[stream.TopicPartition]int64) error
	// TakeRevoked returns the partitions revoked or lost since the last call.
	TakeRevoked() []stream.TopicPartition
}

// Producer is the output side of the loop (produce.Producer). Its errors carry a produce.Class.
type Producer interface {
	InitTransactions(ctx context.Context) error
	Begin() error
	// Produce writes records to their topics in order; a record refused for itself (produce.ErrRecordRefused)
	// does not stop the others, and its index is returned in refused.
	Produce(ctx context.Context, recs []stream.Record) (refused []int, err error)
	// ProduceToPartitions writes each record to partition r.Partition of r.Topic (a changelog co-partitioned
	// with the input).
	ProduceToPartitions(ctx context.Context, recs []stream.Record) error
	SendOffsets(ctx context.Context, offsets map[stream.TopicPartition]int64, group *produce.GroupMetadata) error
	Commit() error
	Abort() error
	// Flush waits for every delivery and reports the batch's first failure (at_least_once only).
	Flush(ctx context.Context) error
}

// Budgeter decides how many records each partition may contribute to the next batch (the backpressure
// controller). lags has every assigned partition, -1 where the lag is not known yet; a partition missing from
// the result gets no records this batch.
type Budgeter interface {
	Budgets(lags map[stream.TopicPartition]int64, interval time.Duration) map[stream.TopicPartition]int64
	Observe(BatchStats)
}

// BatchStats describes one committed batch, for the Budgeter.
type BatchStats struct {
	// Records is the number of input records in the batch, per partition in PerPartition.
	Records      int
	PerPartition map[stream.TopicPartition]int64
	// Processing is the time from the end of assembly to the end of the commit: transform, produce, commit.
	Processing time.Duration
	// Duration is the whole batch: assembly plus processing.
	Duration time.Duration
	// SchedulingDelay is how much the whole batch overran the batch interval: the delay the next batch starts
	// with.
	SchedulingDelay time.Duration
	Interval        time.Duration
}

// Deduplicator drops inputs whose identity was already seen (package dedupe). Its state changes travel as
// changelog records in the batch's own transaction, so they commit or roll back with the outputs and offsets;
// Committed and Aborted tell it which happened.
type Deduplicator interface {
	// Filter returns the records to transform, the records without an identity (dead-lettered with the error),
	// and the changelog records to write in this batch's transaction.
	Filter(ctx context.Context, in []stream.Record) (kept []stream.Record, rejected []dedupe.Rejected, changelog []stream.Record, err error)
	Committed()
	Aborted()
	// Forget drops the state of partitions this member lost.
	Forget(partitions []stream.TopicPartition)
}

// Unlimited is the Budgeter used without backpressure: every partition may fill the whole batch, and the batch
// size cap (MaxRecords) is what shares a batch between partitions.
type Unlimited struct{ MaxRecords int }

// Budgets gives every partition the whole batch.
func (u Unlimited) Budgets(lags map[stream.TopicPartition]int64, _ time.Duration) map[stream.TopicPartition]int64 {
	b := make(map[stream.TopicPartition]int64, len(lags))
	for tp := range lags {
		b[tp] = int64(u.MaxRecords)
	}
	return b
}

// Observe ignores the stats: an unlimited budget does not adapt.
func (Unlimited) Observe(BatchStats) {}

// Loop runs batches until its context is cancelled or a fatal error. Fields set to their zero value get the
// defaults named beside them.
type Loop struct {
	Consumer  Consumer
	Producer  Producer
	Transform stream.Transform // nil: stream.Identity
	Budgeter  Budgeter         // nil: Unlimited{MaxRecords}
	Dedupe    Deduplicator     // nil: no de-duplication

	OutputTopic     string // where outputs with no topic of their own go
	DeadLetterTopic string // where records the transform failed on go
	Interval        time.Duration
	MaxRecords      int
	// AtLeastOnce replaces transactions by produce, flush, then commit offsets: a crash between the flush and
	// the commit duplicates the batch. It is the baseline exactly_once is measured against.
	AtLeastOnce bool
	// ShutdownTimeout bounds how long the batch in flight may take to finish after the context is cancelled;
	// past it the batch is aborted. A commit already started is not interrupted (librdkafka cannot be).
	ShutdownTimeout time.Duration
	// MaxRecordBytes, when above 0, is the largest output the producer takes (its message.max.bytes): an input
	// with a larger output goes to the dead-letter topic instead, before its transaction begins.
	MaxRecordBytes int
	// TestAbortRatio, for fault tests only, is the share of transactions aborted on purpose just before commit.
	TestAbortRatio float64
	// TestInTransaction, for fault tests only, is called in every transaction after its outputs are produced and
	// before its offsets are sent, with the transaction's number (from 1): the moment a frozen or killed
	// process leaves the most behind.
	TestInTransaction func(n int)
	// MinBackoff and MaxBackoff bound the exponential pause after an aborted batch or a retriable error.
	MinBackoff time.Duration // 100ms
	MaxBackoff time.Duration // 10s

	Metrics *Metrics     // nil: metrics on a private registry
	Logger  *slog.Logger // nil: slog.Default()

	lastBeat     atomic.Int64
	ready        atomic.Bool
	transactions int // begun so far, for TestInTransaction
	// refused holds, by source, the inputs one of whose outputs the producer refused: the redo dead-letters them.
	refused map[string]error
	// open is whether a transaction has begun and not yet been committed or aborted: librdkafka refuses to abort
	// a transaction that does not exist.
	open bool
}

// LastIteration is when the loop last made progress through a step; /healthz compares it with the clock.
func (l *Loop) LastIteration() time.Time { return time.Unix(0, l.lastBeat.Load()) }

// Initialized reports whether the producer has registered its transactional.id (and fenced older incarnations).
func (l *Loop) Initialized() bool { return l.ready.Load() }

// abortable is a failure after which the batch is aborted, the input rewound and the batch redone; step names
// where it happened, for the aborted-transactions metric.
type abortable struct {
	step string
	err  error
	// refused are the indexes, among the records the transaction was producing, of those the producer refused
	// for themselves (produce.ErrRecordRefused).
	refused []int
	// lost says the member's group session ended before the transaction began: nothing to abort.
	lost bool
}

func (e *abortable) Error() string { return e.err.Error() }
func (e *abortable) Unwrap() error { return e.err }

// Run initialises the producer and runs batches until ctx is cancelled (returning nil once the batch in flight is
// committed or aborted) or a fatal error occurs (returned; the process should exit non-zero).
func (l *Loop) Run(ctx context.Context) error {
	l.defaults()
	l.beat()
	// work outlives ctx by ShutdownTimeout, so that a shutdown lets the batch in flight finish instead of
	// failing it half-way; only if the batch is still running after that is it aborted.
	work, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	go func() {
		select {
		case <-ctx.Done():
		case <-work.Done():
			return
		}
		t := time.NewTimer(l.ShutdownTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			stop()
		case <-work.Done():
		}
	}()

	// Before the first transaction: fence any previous incarnation with our transactional.id and settle the
	// transaction it may have left open, or its outputs could become visible after ours.
	if err := l.retry(ctx, func() error { return l.Producer.InitTransactions(ctx) }); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("init transactions: %w", err)
	}
	l.ready.Store(true)

	aborts := 0
	for ctx.Err() == nil {
		l.beat()
		committed, err := l.batch(ctx, work)
		var ab *abortable
		switch {
		case err == nil:
			if committed {
				aborts = 0
			}
		case errors.As(err, &ab):
			if err := l.recover(ctx, work, ab, aborts); err != nil {
				return err
			}
			aborts++
		default:
			return err
		}
	}
	return nil
}

func (l *Loop) defaults() {
	if l.Transform == nil {
		l.Transform = stream.Identity
	}
	if l.MaxRecords <= 0 {
		l.MaxRecords = consume.DefaultMaxBatchRecords
	}
	if l.Budgeter == nil {
		l.Budgeter = Unlimited{MaxRecords: l.MaxRecords}
	}
	if l.Interval <= 0 {
		l.Interval = 500 * time.Millisecond
	}
	if l.ShutdownTimeout <= 0 {
		l.ShutdownTimeout = 30 * time.Second
	}
	if l.MinBackoff <= 0 {
		l.MinBackoff = 100 * time.Millisecond
	}
	if l.MaxBackoff <= 0 {
		l.MaxBackoff = 10 * time.Second
	}
	if l.Metrics == nil {
		l.Metrics = NewMetrics(nil)
	}
	if l.refused == nil {
		l.refused = map[string]error{}
	}
	if l.Logger == nil {
		l.Logger = slog.Default()
	}
}

// batch runs one batch, step by step, and says whether it committed one. ctx is the loop's (cancelled at
// shutdown), work the batch's (which outlives ctx by the shutdown timeout).
func (l *Loop) batch(ctx, work context.Context) (committed bool, err error) {
	// 1. Budgets: how many records each partition may contribute, from the rate controller.
	lags := l.Consumer.Lags()
	l.Metrics.observeAssignment(lags)
	budgets := l.Budgeter.Budgets(lags, l.Interval)

	// 2. Assemble. The only place the consumer is polled, hence the only place a rebalance can land: no
	// partition changes hands between here and the commit, so the batch only holds partitions we still own.
	start := time.Now()
	in, err := l.Consumer.Assemble(ctx, budgets, l.Interval, l.MaxRecords)
	if err != nil {
		return false, fmt.Errorf("assemble batch: %w", err)
	}
	if l.Dedupe != nil {
		// State of a lost partition goes: its new owner extends the changelog, and if the partition comes
		// back, the state must be read again from there.
		l.Dedupe.Forget(l.Consumer.TakeRevoked())
	}
	if len(in) == 0 {
		// Nothing to commit, so no transaction: an empty one would still cost the coordinator two writes.
		return false, nil
	}
	assembled := time.Now()
	l.beat()

	// 3. De-duplicate, then transform. A record the transform fails on is dead-lettered in this same
	// transaction, so it is committed exactly once like any output and never blocks the partition behind it.
	// Duplicates produce nothing, but their offsets are committed with the batch like any other input's.
	offsets := nextOffsets(in)
	kept, dead, changelog, err := l.dedupe(work, in)
	if err != nil {
		return false, &abortable{step: "dedupe", err: err}
	}
	out, from, failed, err := l.transform(work, kept)
	if err != nil {
		return false, &abortable{step: "transform", err: err}
	}
	dead = append(dead, failed...)

	// 4. Transaction: begin, produce, send offsets, commit.
	steps, err := l.commit(work, append(out, dead...), changelog, offsets)
	var ab *abortable
	if errors.As(err, &ab) && len(ab.refused) > 0 {
		// The producer refuses these records whatever we do. Their inputs are dead-lettered when the batch is
		// redone, with none of their outputs: those already produced go with the aborted transaction.
		for _, i := range ab.refused {
			if i >= len(out) {
				return false, fmt.Errorf("dead letter refused by the producer (raise the producer's message.max.bytes "+
					"and the dead-letter topic's max.message.bytes): %w", ab.err)
			}
			src := kept[from[i]]
			l.refused[src.Source()] = ab.err
			l.Logger.Warn("output refused by the producer; its input goes to the dead-letter topic when the batch is redone",
				"source", src.Source(), "error", ab.err)
		}
	}
	if err != nil {
		return false, err
	}
	end := time.Now()

	if l.Dedupe != nil {
		l.Dedupe.Committed()
	}
	if len(l.refused) > 0 {
		for _, r := range in {
			delete(l.refused, r.Source())
		}
	}

	// 5. Report.
	perPartition := make(map[stream.TopicPartition]int64, len(offsets))
	for _, r := range in {
		perPartition[r.TopicPartition()]++
	}
	l.Budgeter.Observe(BatchStats{
		Records:         len(in),
		PerPartition:    perPartition,
		Processing:      end.Sub(assembled),
		Duration:        end.Sub(start),
		SchedulingDelay: max(0, end.Sub(start)-l.Interval),
		Interval:        l.Interval,
	})
	l.Metrics.committed(len(in), len(out), len(dead), end.Sub(start), end.Sub(steps.committing))
	if l.Logger.Enabled(work, slog.LevelDebug) { // the input ranges cost a pass over the batch
		l.Logger.Debug("batch committed", "records_in", len(in), "records_out", len(out), "dead_lettered", len(dead),
			"partitions", len(offsets), "input", inputRanges(in), "assembly", assembled.Sub(start),
			"processing", end.Sub(assembled), "transform", steps.producing.Sub(assembled),
			"produce", steps.offsets.Sub(steps.producing), "send_offsets", steps.committing.Sub(steps.offsets),
			"commit", end.Sub(steps.committing))
	}
	return true, nil
}

// steps are when the steps of a transaction began, for the metrics and the debug log.
type steps struct {
	producing, offsets, committing time.Time
}

// commit writes the batch's outputs and offsets.
func (l *Loop) commit(work context.Context, out, changelog []stream.Record, offsets map[stream.TopicPartition]int64) (steps, error) {
	st := steps{producing: time.Now()}
	// Taken after polling, so it carries the generation that owns the batch's partitions (KIP-447).
	group, err := l.Consumer.GroupMetadata()
	if errors.Is(err, consume.ErrAssignmentLost) {
		return st, &abortable{step: "assignment_lost", err: err, lost: true}
	}
	if err != nil {
		return st, err
	}
	if err := l.Producer.Begin(); err != nil {
		return st, l.classify("begin", err)
	}
	l.open = !l.AtLeastOnce
	// A record refused for itself does not end the loop: the others are offered too, so that one redo of the
	// batch deals with all of its refused records rather than one redo each.
	refused, err := l.Producer.Produce(work, out)
	if err != nil && !errors.Is(err, produce.ErrRecordRefused) {
		return st, l.classify("produce", err)
	}
	if len(refused) > 0 {
		// Abort right after producing can reach the coordinator before the partitions these records added to
		// the transaction, which it answers with a fatal INVALID_TXN_STATE (seen with librdkafka 2.11): the
		// records delivered first, their partitions are registered.
		_ = l.Producer.Flush(work)
		return st, &abortable{step: "produce", err: err, refused: refused}
	}
	if len(changelog) > 0 {
		if err := l.Producer.ProduceToPartitions(work, changelog); err != nil {
			return st, l.classify("produce_changelog", err)
		}
	}
	st.offsets = time.Now()
	if l.AtLeastOnce {
		st.committing = st.offsets
		// Offsets only after every output is acknowledged: the order that makes at_least_once at least once.
		if err := l.Producer.Flush(work); err != nil {
			return st, l.classify("flush", err)
		}
		if err := l.Consumer.CommitOffsets(offsets); err != nil {
			// A rebalance took the partitions (or the coordinator moved): redo from the committed offsets.
			return st, &abortable{step: "commit_offsets", err: err}
		}
		return st, nil
	}
	if l.TestInTransaction != nil {
		l.transactions++
		l.TestInTransaction(l.transactions)
	}
	// Retried with the very same offsets and metadata: librdkafka may have half-sent them.
	if err := l.retry(work, func() error { return l.Producer.SendOffsets(work, offsets, group) }); err != nil {
		return st, l.classify("send_offsets", err)
	}
	if l.TestAbortRatio > 0 && rand.Float64() < l.TestAbortRatio {
		// Everything is written and the offsets are in the transaction: the worst moment to abort, which is why
		// the fault tests abort here.
		return st, &abortable{step: "test_abort", err: errors.New("aborted on purpose (PROCESSOR_TEST_ABORT_RATIO)")}
	}
	st.committing = time.Now()
	// Not bounded by work: commit waits as long as the transaction may live, and giving up on a retriable commit
	// would leave its outcome unknown. The broker's transaction timeout bounds it.
	if err := l.retry(context.Background(), l.Producer.Commit); err != nil {
		return st, l.classify("commit", err)
	}
	l.open = false
	return st, nil
}

// classify turns a producer error into the loop's decision: abortable redoes the batch, anything else is fatal.
// A retriable error that is still failing when retries stop (the shutdown deadline passed) is treated as
// abortable: the transaction is incomplete, and aborting it is always safe.
func (l *Loop) classify(step string, err error) error {
	switch produce.ClassOf(err) {
	case produce.Abortable, produce.Retriable:
		return &abortable{step: step, err: err}
	default:
		return fmt.Errorf("fatal producer error: %w", err)
	}
}

// recover aborts the failed transaction, rewinds the input to the committed offsets and backs off. Its error is
// fatal.
func (l *Loop) recover(ctx, work context.Context, ab *abortable, aborts int) error {
	l.Metrics.aborted(ab.step)
	if ab.lost {
		l.Logger.Warn("batch dropped before its transaction: the group session ended; rewinding to committed offsets",
			"error", ab.err)
	} else {
		l.Logger.Warn("transaction aborted; rewinding to committed offsets", "step", ab.step, "error", ab.err,
			"consecutive_aborts", aborts+1)
	}
	if l.Dedupe != nil {
		// The batch is read again, so the store goes back to what the committed changelog holds.
		l.Dedupe.Aborted()
	}
	if l.open {
		// Abort is retried like commit: its outcome must be known before a new transaction can begin.
		if err := l.retry(context.Background(), l.Producer.Abort); err != nil {
			return fmt.Errorf("abort transaction after %s failed: %w", ab.step, err)
		}
		l.open = false
	}
	if ctx.Err() != nil {
		// Shutting down: the committed offsets are where the partitions' next owner starts.
		return nil
	}
	// Without the rewind the consumer would go on after the aborted batch, and the batch would be lost. That
	// holds for a batch dropped because the group session ended too: librdkafka can reset the member id and
	// generation without revoking the partitions (no lost-assignment callback follows), and a partition that is
	// revoked after all is read again from the committed offsets by its next owner either way.
	for attempt := 0; ; attempt++ {
		err := l.Consumer.Rewind(work)
		if err == nil {
			break
		}
		if attempt == 4 {
			return fmt.Errorf("rewind to committed offsets after aborted %s: %w", ab.step, err)
		}
		l.Logger.Warn("rewind failed; retrying", "error", err)
		if !l.sleep(ctx, l.backoff(attempt)) {
			return nil
		}
	}
	l.sleep(ctx, l.backoff(aborts))
	return nil
}

// dedupe drops the duplicates in a batch and dead-letters records without an identity; without a Deduplicator
// every record is kept.
func (l *Loop) dedupe(work context.Context, in []stream.Record) (kept, dead, changelog []stream.Record, err error) {
	if l.Dedupe == nil {
		return in, nil, nil, nil
	}
	kept, rejected, changelog, err := l.Dedupe.Filter(work, in)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, r := range rejected {
		dead = append(dead, l.deadLetter(r.Record, r.Err))
	}
	return kept, dead, changelog, nil
}

// transform applies the transform to every record; from[i] is the index in `in` of the record out[i] came from.
// Failures (errors, panics, an output larger than the producer takes) become dead-letter records, as does,
// untransformed, a record whose output the producer refused in an earlier attempt of this batch. An error is
// returned only when the work context ended: a transform failing because we are out of time says nothing about
// the record.
func (l *Loop) transform(work context.Context, in []stream.Record) (out []stream.Record, from []int, dead []stream.Record, err error) {
	// Most transforms emit one record per input: sized once instead of regrown (and recopied) ~log2(n) times.
	out = make([]stream.Record, 0, len(in))
	from = make([]int, 0, len(in))
	for i, r := range in {
		if len(l.refused) > 0 {
			if reason, ok := l.refused[r.Source()]; ok {
				// Kept until the batch commits: if this attempt fails too, the next one needs it again.
				dead = append(dead, l.deadLetter(r, fmt.Errorf("an output of this record was refused: %w", reason)))
				continue
			}
		}
		res, terr := l.apply(work, r)
		if terr == nil {
			terr = l.checkSizes(res)
		}
		if terr != nil {
			if work.Err() != nil {
				return nil, nil, nil, fmt.Errorf("transform %s: %w", r.Source(), context.Cause(work))
			}
			dead = append(dead, l.deadLetter(r, terr))
			continue
		}
		for _, o := range res {
			if o.Topic == "" {
				o.Topic = l.OutputTopic
			}
			out = append(out, o)
			from = append(from, i)
		}
	}
	return out, from, dead, nil
}

// checkSizes refuses outputs the producer would refuse, so their input is dead-lettered with none of its outputs
// instead of failing the transaction half-way.
func (l *Loop) checkSizes(out []stream.Record) error {
	if l.MaxRecordBytes <= 0 {
		return nil
	}
	for _, o := range out {
		if n := produce.EncodedSize(o); n > l.MaxRecordBytes {
			return fmt.Errorf("output too large: %d bytes with headers, above the producer's message.max.bytes (%d)", n, l.MaxRecordBytes)
		}
	}
	return nil
}

func (l *Loop) apply(ctx context.Context, r stream.Record) (out []stream.Record, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("transform panicked: %v", p)
		}
	}()
	return l.Transform(ctx, r)
}

// Dead-letter headers: why the record failed and where it came from.
const (
	HeaderError           = "eosproc.error"
	HeaderSourceTopic     = "eosproc.source.topic"
	HeaderSourcePartition = "eosproc.source.partition"
	HeaderSourceOffset    = "eosproc.source.offset"
)

// deadLetter keeps the record's key, value, headers and timestamp and adds the reason and the source position;
// it also carries stream.SourceHeader, so a reader counting outputs by source sees dead letters too.
func (l *Loop) deadLetter(r stream.Record, err error) stream.Record {
	headers := make([]stream.Header, 0, len(r.Headers)+5)
	headers = append(headers, r.Headers...)
	headers = append(headers,
		stream.Header{Key: HeaderError, Value: []byte(err.Error())},
		stream.Header{Key: HeaderSourceTopic, Value: []byte(r.Topic)},
		stream.Header{Key: HeaderSourcePartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
		stream.Header{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
		stream.Header{Key: stream.SourceHeader, Value: []byte(r.Source())},
	)
	return stream.Record{Topic: l.DeadLetterTopic, Key: r.Key, Value: r.Value, Headers: headers, Timestamp: r.Timestamp}
}

// nextOffsets is what the group commits for a batch: per partition in it, the offset after its last record
// (Kafka's committed offset names the next record to read), and nothing for partitions without records, whose
// committed offsets must stay as they are.
func nextOffsets(in []stream.Record) map[stream.TopicPartition]int64 {
	offsets := map[stream.TopicPartition]int64{}
	for _, r := range in {
		tp := r.TopicPartition()
		if next := r.Offset + 1; next > offsets[tp] {
			offsets[tp] = next
		}
	}
	return offsets
}

// inputRanges describes which offsets of which partitions a batch held, e.g. "in/0:[10,20) in/1:[5,9)", so a
// debug log can be matched against the output's source headers.
func inputRanges(in []stream.Record) string {
	type span struct{ first, next int64 }
	spans := map[stream.TopicPartition]span{}
	for _, r := range in {
		tp := r.TopicPartition()
		s, ok := spans[tp]
		if !ok || r.Offset < s.first {
			s.first = r.Offset
		}
		s.next = max(s.next, r.Offset+1)
		spans[tp] = s
	}
	parts := make([]string, 0, len(spans))
	for tp, s := range spans {
		parts = append(parts, fmt.Sprintf("%s:[%d,%d)", tp, s.first, s.next))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// retry calls op again while it fails with a retriable error, backing off, until ctx ends.
func (l *Loop) retry(ctx context.Context, op func() error) error {
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil || produce.ClassOf(err) != produce.Retriable {
			return err
		}
		l.Logger.Info("retrying after retriable error", "error", err, "attempt", attempt+1)
		l.beat()
		if !l.sleep(ctx, l.backoff(attempt)) {
			return err
		}
	}
}

func (l *Loop) backoff(attempt int) time.Duration {
	d := l.MinBackoff
	for range min(attempt, 30) {
		d *= 2
		if d >= l.MaxBackoff {
			return l.MaxBackoff
		}
	}
	return d
}

// sleep waits d or until ctx ends, and says whether it waited the whole time.
func (l *Loop) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (l *Loop) beat() { l.lastBeat.Store(time.Now().UnixNano()) }
