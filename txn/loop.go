package txn

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync/atomic"
	"time"

	"github.com/eosproc/eosproc/produce"
	"github.com/eosproc/eosproc/stream"
)

// Loop runs batches until its context is cancelled or a fatal error. Fields set to their zero value get the
// defaults named beside them.
type Loop struct {
	Consumer Consumer
	Producer Producer
	// Alternate, a second transactional producer with a transactional.id of its own, takes every other
	// transaction: the next batch's transaction then begins and writes on it as soon as the previous one's
	// records are delivered, while that one still sends its offsets and commits (one producer can hold only one
	// open transaction). nil: every transaction on Producer. Not used in at_least_once, with de-duplication (its
	// store holds one batch's pending changes at a time) or in the serial loop.
	Alternate Producer
	Transform stream.Transform // nil: stream.Identity (written with fewer allocations than when passed)
	Budgeter  Budgeter         // nil: Unlimited, up to the consumer's batch size
	Dedupe    Deduplicator     // nil: no de-duplication

	OutputTopic     string // where outputs with no topic of their own go
	DeadLetterTopic string // where records the transform failed on go
	// AtLeastOnce replaces transactions by produce, flush, then commit offsets: a crash between the flush and
	// the commit duplicates the batch. It is the baseline exactly_once is measured against.
	AtLeastOnce bool
	// ShutdownTimeout bounds how long the batch in flight may take to finish after the context is cancelled;
	// past it the batch is aborted. A commit already started is not interrupted (librdkafka cannot be).
	ShutdownTimeout time.Duration // 30s
	// TransactionTimeout is the producer's transaction.timeout.ms: how long after the shutdown deadline a commit
	// or abort is still retried.
	TransactionTimeout time.Duration // 60s
	// MaxRecordBytes, when above 0, is the largest output the producer takes (its message.max.bytes): an input
	// with a larger output goes to the dead-letter topic instead, before its transaction begins.
	MaxRecordBytes int
	// TopicMaxBytes is the max.message.bytes of output topics (route and dead-letter topics included), where
	// known: a broker refuses a record batch above it, so an input with an output that would not fit in a record
	// batch of its own is dead-lettered.
	TopicMaxBytes map[string]int
	// MinBackoff and MaxBackoff bound the exponential pause after an aborted batch or a retriable error.
	MinBackoff time.Duration // 100ms
	MaxBackoff time.Duration // 10s
	Faults     Faults        // none
	// StopOnBadRecord is Kafka Connect's errors.tolerance=none: a record that would be dead-lettered stops the
	// loop with an error naming it instead, for pipelines where a bad record must stop the line. The batches
	// before it are committed; its own is not (its transaction is aborted if it had begun writing).
	StopOnBadRecord bool
	// AppID and InstanceID name who dead-lettered a record, in its dead letter's headers.
	AppID, InstanceID string
	// Serial assembles a batch only once the previous transaction has settled: the loop before pipelining,
	// kept so that benchmarks can measure what pipelining gains.
	Serial bool

	Metrics *Metrics     // nil: metrics on a private registry
	Logger  *slog.Logger // nil: slog.Default()

	// The consumer's batch limits (Consumer.Batching), configured there once.
	interval   time.Duration
	maxRecords int

	deadLetterLog deadLetterLog

	lastBeat atomic.Int64
	ready    atomic.Bool
	// inflight is the transaction running beside the next batch's assembly, nil when none is; assembling is the
	// batch being assembled, nil between assemblies. Only the loop's goroutine uses them (the revoke barrier and
	// the batch sink run there, inside Assemble).
	inflight   *flight
	assembling *batch
	// committedEarly says the batch sink landed a committed transaction during the assembly.
	committedEarly bool
	// refused holds the inputs one of whose outputs the producer refused: the redo dead-letters them. Loop
	// goroutine only.
	refused map[position]error
	// identity writes the outputs when the transform is the default one: Identity's, without its allocations.
	// Used by whichever goroutine transforms, one at a time.
	identity *stream.IdentityWriter
	// fitsAll is the largest EncodedSize every limit accepts (the producer's and every known topic's), so that
	// checkSizes looks an output's topic up only for the rare output above it; 0 when there are no limits.
	fitsAll int
	// lanes are the producers transactions alternate between (Producer, then Alternate if set), and lastLane
	// the one the latest transaction began on. A batch takes the next lane when it begins, on the loop's
	// goroutine or its transaction's, never both at once: it begins only once the previous batch has begun.
	lanes    []*lane
	lastLane int
	// transactions begun so far (for Faults.InTransaction); used by the transaction's goroutine only, one
	// transaction at a time.
	transactions int
}

// lane is a producer and whether a transaction of its is open (librdkafka refuses to abort a transaction that
// does not exist). Only the goroutine writing the batch that holds it uses it.
type lane struct {
	p    Producer
	open bool
}

// pipelined says whether the next batch may begin its transaction on the other lane while the previous one
// still sends its offsets and commits.
func (l *Loop) pipelined() bool { return len(l.lanes) > 1 }

// nextLane returns the lane the next transaction begins on: the one that did not take the previous transaction,
// whose coordinator may still be writing that transaction's markers.
func (l *Loop) nextLane() *lane {
	l.lastLane = (l.lastLane + 1) % len(l.lanes)
	return l.lanes[l.lastLane]
}

// LastIteration is when the loop last made progress through a step; /healthz compares it with the clock.
func (l *Loop) LastIteration() time.Time { return time.Unix(0, l.lastBeat.Load()) }

// Initialized reports whether the producer has registered its transactional.id (and fenced older incarnations).
func (l *Loop) Initialized() bool { return l.ready.Load() }

// Run initialises the producer and runs batches until ctx is cancelled (returning nil once the batches in
// flight are committed or aborted) or a fatal error occurs (returned; the process should exit non-zero).
//
// Batches are pipelined: batch N+1 is assembled while batch N's transaction writes what is left of it, sends its
// offsets and commits; N+1's transaction begins once N's has committed (with an Alternate, once N's records are
// delivered, on the other producer), and from then on N+1's records are transformed and written as they arrive
// (writeAhead), so that its end leaves little more than the offsets and the commit. What keeps this exactly
// once: a revocation or loss, served inside the assembly, first waits for the transaction in flight, then aborts
// the open transaction if it holds records of the partitions going, and drops their records that no transaction
// holds (revokeBarrier); and when a transaction aborts, the batch assembled beside it is dropped too (its own
// transaction aborted, if it began on the Alternate) and every partition is rewound to its committed offsets, so
// both batches are read again.
func (l *Loop) Run(ctx context.Context) error {
	l.defaults()
	l.beat()
	// work outlives ctx by ShutdownTimeout, so that a shutdown lets the batch in flight finish instead of
	// failing it half-way; only if the batch is still running after that is it aborted. settle outlives work by
	// TransactionTimeout: a commit or abort is retried until then (its outcome must be known), and no longer,
	// since the broker aborts the transaction by itself by then. So a shutdown takes at most ShutdownTimeout +
	// TransactionTimeout.
	work, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	settle, stopSettle := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSettle()
	go cancelAfter(ctx, work, l.ShutdownTimeout, stop)
	go cancelAfter(work, settle, l.TransactionTimeout, stopSettle)

	// Before the first transaction: fence any previous incarnation with our transactional.id and settle the
	// transaction it may have left open, or its outputs could become visible after ours.
	for _, ln := range l.lanes {
		if err := l.retry(ctx, func() error { return ln.p.InitTransactions(ctx) }); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("init transactions: %w", err)
		}
	}
	l.ready.Store(true)
	l.Consumer.SetRevokeBarrier(l.revokeBarrier(work, settle))
	if !l.Serial {
		l.Consumer.SetBatchHold(l.inFlight)
		l.Consumer.SetBatchSink(l.writeAhead(work, settle))
	}

	aborts := 0
	for ctx.Err() == nil {
		l.beat()
		next, err := l.assemble(ctx, work, settle)
		if err == nil && next != nil && l.Dedupe == nil {
			// Prepared while the previous transaction commits, if it still does. With de-duplication it waits
			// for that transaction's outcome first: the store holds one batch's pending changes at a time.
			err = l.prepareRest(work, settle, next)
			if err == nil {
				err = l.writeBeside(work, settle, next)
			}
		}
		committed, settled := l.land()
		if settled != nil && next != nil && next.begun {
			// Begun on the other lane while the failed transaction committed: it goes with it (the rewind reads
			// both again), or it would commit its offsets past the failed batch.
			aerr := l.abortOpen(work, settle, next.lane, "previous transaction failed", true)
			if aerr != nil && asAbortable(settled) != nil {
				return aerr
			}
		}
		committed = committed || l.committedEarly
		l.committedEarly = false
		if settled != nil && asAbortable(settled) == nil {
			return settled
		}
		if err != nil && asAbortable(err) == nil {
			return err
		}
		if committed {
			aborts = 0
		}
		// State kept per partition goes with a partition revoked or lost during the assembly. Its new owner
		// extends its de-duplication changelog, and if it comes back, its state must be read again from there.
		revoked := l.Consumer.TakeRevoked()
		l.forgetRefused(revoked)
		if l.Dedupe != nil {
			l.Dedupe.Forget(revoked)
			if next != nil && err == nil && settled == nil {
				err = l.prepareRest(work, settle, next)
			}
		}
		if err != nil && asAbortable(err) == nil {
			return err // a record not tolerated: its transaction, if it began, is aborted
		}
		// An aborted transaction takes the batch assembled beside it along: the rewind reads both again.
		if ab := cmp.Or(asAbortable(settled), asAbortable(err)); ab != nil {
			if err := l.recover(ctx, work, ab, aborts); err != nil {
				return err
			}
			aborts++
			continue
		}
		if next != nil {
			l.send(work, settle, next)
		}
	}
	return l.shutDown(ctx, work, aborts)
}

// shutDown lets the batch in flight commit (or, past the shutdown timeout, abort) before Run returns.
func (l *Loop) shutDown(ctx, work context.Context, aborts int) error {
	if _, settled := l.land(); settled != nil {
		ab := asAbortable(settled)
		if ab == nil {
			return settled
		}
		return l.recover(ctx, work, ab, aborts)
	}
	return nil
}

// cancelAfter calls cancel d after parent ends, unless ctx (which cancel ends) ended first.
func cancelAfter(parent, ctx context.Context, d time.Duration, cancel context.CancelFunc) {
	select {
	case <-parent.Done():
	case <-ctx.Done():
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		cancel()
	case <-ctx.Done():
	}
}

func (l *Loop) defaults() {
	if l.Transform == nil {
		l.Transform = stream.Identity
		l.identity = &stream.IdentityWriter{}
	}
	l.interval, l.maxRecords = l.Consumer.Batching()
	if l.Budgeter == nil {
		l.Budgeter = Unlimited{MaxRecords: l.maxRecords}
	}
	if l.ShutdownTimeout <= 0 {
		l.ShutdownTimeout = 30 * time.Second
	}
	if l.TransactionTimeout <= 0 {
		l.TransactionTimeout = time.Minute
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
	l.lanes = []*lane{{p: l.Producer}}
	if l.Alternate != nil && !l.AtLeastOnce && l.Dedupe == nil && !l.Serial {
		l.lanes = append(l.lanes, &lane{p: l.Alternate})
	}
	l.lastLane = len(l.lanes) - 1 // the first transaction on Producer
	if l.refused == nil {
		l.refused = map[position]error{}
	}
	l.fitsAll = l.MaxRecordBytes
	for _, limit := range l.TopicMaxBytes {
		if fits := limit - produce.RecordBatchOverhead; l.fitsAll <= 0 || fits < l.fitsAll {
			l.fitsAll = fits
		}
	}
	if l.Logger == nil {
		l.Logger = slog.Default()
	}
}

// assemble polls the next batch within the rate controller's budgets; nil when nothing arrived. It is the only
// place the consumer is polled, hence the only place a rebalance can land.
func (l *Loop) assemble(ctx, work, settle context.Context) (*batch, error) {
	lags := l.Consumer.Lags()
	l.Metrics.observeAssignment(lags)
	budgets := l.Budgeter.Budgets(l.restored(ctx, lags), l.interval)
	if l.Serial {
		l.awaitInFlight()
	}
	b := &batch{started: time.Now()}
	l.assembling = b
	in, err := l.Consumer.Assemble(ctx, budgets)
	l.assembling = nil
	if err == nil {
		err = b.doomed
	}
	if err != nil {
		if b.doomed == nil && b.begun {
			// The consumer failed for good after the batch began writing: the process exits, and its
			// transaction must not hold the output's readers back until the broker times it out.
			if aerr := l.abortOpen(work, settle, b.lane, "assemble", true); aerr != nil {
				l.Logger.Warn("abort the batch's transaction after the consumer failed", "error", aerr)
			}
		}
		return nil, fmt.Errorf("assemble batch: %w", err)
	}
	if len(in) == 0 {
		// Nothing to commit, so no transaction: an empty one would still cost the coordinator two writes. (A batch
		// whose transaction began has records: its records are dropped only with partitions going, which dooms it.)
		return nil, nil
	}
	b.in, b.records, b.assembled, b.early = in, len(in), time.Now(), b.written
	b.offsets, b.perPartition = summarize(in)
	if l.Logger.Enabled(ctx, slog.LevelDebug) { // a pass over the batch, for the debug log only
		b.ranges = inputRanges(in)
	}
	l.beat()
	return b, nil
}

// restored returns lags without the partitions whose de-duplication state is not restored yet, and starts their
// restores. Left without a budget, their records wait in the consumer (carried, the partitions paused) while the
// other partitions' batches go on, instead of the whole loop waiting inside a batch for a restore that can take
// minutes. A restore begins once the partition's position, hence its lag, is known: by then its committed offset
// has been read as stable, so the previous owner's transactions are settled.
func (l *Loop) restored(ctx context.Context, lags map[stream.TopicPartition]int64) map[stream.TopicPartition]int64 {
	if l.Dedupe == nil {
		return lags
	}
	var ready map[stream.TopicPartition]int64
	for tp, lag := range lags {
		ok := false
		if lag >= 0 {
			var err error
			if ok, err = l.Dedupe.Ready(ctx, tp); err != nil {
				l.Logger.Warn("de-duplication state not restored; restoring it again", "partition", tp.String(), "error", err)
			}
		}
		if ok {
			continue
		}
		if ready == nil {
			ready = maps.Clone(lags)
		}
		delete(ready, tp)
	}
	if ready == nil {
		return lags
	}
	return ready
}

// land waits for the transaction in flight, if any, and accounts for it: on commit the de-duplication store,
// the rate controller and the debug log learn of it; on failure the inputs whose outputs the
// producer refused are remembered for the redo. It returns whether a transaction committed, and the
// transaction's error (nil, *abortable, or fatal).
func (l *Loop) land() (committed bool, err error) {
	f := l.inflight
	if f == nil {
		return false, nil
	}
	<-f.done
	l.inflight = nil
	l.beat()
	b := f.batch
	if f.err != nil {
		if ab := asAbortable(f.err); ab != nil {
			l.rememberRefused(ab)
		}
		return false, f.err
	}
	if l.Dedupe != nil {
		l.Dedupe.Committed()
	}
	for pos := range l.refused {
		if next, ok := b.offsets[pos.TopicPartition]; ok && pos.offset < next {
			delete(l.refused, pos) // committed, as a dead letter
		}
	}
	l.report(b)
	return true, nil
}

// report tells the rate controller and the debug log about a committed batch (the metrics counted it when it
// committed).
func (l *Loop) report(b *batch) {
	// The work the batch took: what was written during the assembly, the rest prepared after it, and its
	// transaction's goroutine.
	processing := b.duringAssembly + b.preparedRest + b.ended.Sub(b.sent)
	l.Budgeter.Observe(BatchStats{
		Records:         b.records,
		PerPartition:    b.perPartition,
		Processing:      processing,
		Duration:        b.ended.Sub(b.started),
		SchedulingDelay: b.sent.Sub(b.assembled) - b.preparedRest,
		Interval:        l.interval,
		MaxRecords:      l.maxRecords,
	})
	dead := b.produced - b.outputs
	if l.Logger.Enabled(context.Background(), slog.LevelDebug) {
		l.Logger.Debug("batch committed", "records_in", b.records, "records_out", b.outputs, "dead_lettered", dead,
			"partitions", len(b.offsets), "input", b.ranges, "written_during_assembly", b.early,
			"duration", b.ended.Sub(b.started), "assembly", b.assembled.Sub(b.started), "processing", processing,
			"transform", b.preparation,
			"waited", b.sent.Sub(b.assembled)-b.preparedRest, "produce", b.producing,
			"send_offsets", b.committing.Sub(b.offsetting), "commit", b.ended.Sub(b.committing))
	}
}

func (l *Loop) beat() { l.lastBeat.Store(time.Now().UnixNano()) }
