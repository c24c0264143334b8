package txn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/eosproc/eosproc/consume"
	"github.com/eosproc/eosproc/produce"
	"github.com/eosproc/eosproc/stream"
)

// batch is one micro-batch on its way through the loop: assembled and prepared on the loop's goroutine, then
// written by its transaction on a goroutine of its own, beside the next batch's assembly.
type batch struct {
	// The inputs, as assembled, until the transaction has handed the outputs to the producer (which copies
	// them): then every record of the batch is released, so that two batches' records are not held at once.
	in []stream.Record
	// What outlives the records: their number, the offsets to commit, the records per partition, and (debug log
	// only) their ranges.
	records      int
	offsets      map[stream.TopicPartition]int64
	perPartition map[stream.TopicPartition]int64
	ranges       string
	// Set by prepare: the inputs left after de-duplication, what the transaction writes (the first outputs
	// records are outputs, the rest dead letters), from[i] the index in kept of the input out[i] came from, and
	// the de-duplication store's changelog records.
	kept, out, changelog []stream.Record
	from                 []int
	outputs, produced    int // outputs among out, and len(out)
	deadByStage          map[string]int

	// When each step began or ended, for the rate controller, the metrics and the debug log. The transaction's
	// goroutine writes its steps before it closes its flight's done, and the loop reads them after.
	started, assembled                              time.Time
	preparation                                     time.Duration // de-duplication and transform
	began, producing, offsetting, committing, ended time.Time
}

// flight is a batch's transaction running on its own goroutine.
type flight struct {
	batch *batch
	done  chan struct{} // closed once the transaction has committed, aborted or failed for good
	err   error         // nil, *abortable (the transaction was aborted), or fatal
}

// send starts the batch's transaction on a goroutine of its own; land waits for it. work bounds the
// transaction's steps; settle bounds the retries of its commit or abort (see Run).
func (l *Loop) send(work, settle context.Context, b *batch) {
	f := &flight{batch: b, done: make(chan struct{})}
	l.inflight = f
	go func() {
		defer close(f.done)
		f.err = l.transact(work, settle, b)
	}()
}

// awaitInFlight blocks until the transaction in flight, if any, has committed or aborted. It is the consumer's
// revoke barrier: a revocation or loss, served inside Assemble on the loop's goroutine, lets the partitions go
// only once the records of theirs that the transaction holds are committed or discarded. Their next owner then
// reads the committed offsets the transaction left, neither before it nor behind it.
func (l *Loop) awaitInFlight() {
	if f := l.inflight; f != nil {
		<-f.done
	}
}

// inFlight reports whether a transaction is still running. It is the consumer's batch hold: a batch whose
// interval has passed keeps collecting while the transaction it must wait for runs, so that the loop absorbs what
// arrives meanwhile instead of idling (under load, a transaction slower than the interval would otherwise cap
// the loop at one interval's records per transaction).
func (l *Loop) inFlight() bool {
	f := l.inflight
	if f == nil {
		return false
	}
	select {
	case <-f.done:
		return false
	default:
		return true
	}
}

// abortFlushBound is how long an abort waits for the transaction's outputs to be delivered first.
const abortFlushBound = 5 * time.Second

// transact runs the batch's transaction (begin, produce the outputs, dead letters and changelog, send the
// offsets, commit) and, when a step fails abortably, aborts it before returning: whoever waits for the flight
// (a revocation, the next batch) finds the transaction settled.
func (l *Loop) transact(work, settle context.Context, b *batch) error {
	err := l.transactSteps(work, settle, b)
	b.ended = time.Now()
	if err == nil {
		// Counted here rather than when the loop lands the batch, up to an assembly later: a reader of the
		// output must not see more records than the metrics.
		l.Metrics.committed(b.records, b.outputs, b.deadByStage, b.ended.Sub(b.started), b.ended.Sub(b.committing))
	}
	var ab *abortable
	if errors.As(err, &ab) && l.open {
		if !b.offsetting.IsZero() || len(ab.refusedInputs) > 0 {
			// The outputs were all handed over (the producer refused some for themselves, or the failure came
			// after producing): let them be delivered first. An abort that reaches the coordinator before the
			// partitions these records add to the transaction is answered with a fatal INVALID_TXN_STATE
			// (librdkafka 2.11; the chaos row deleting an input topic, whose lost partition aborts the batch
			// right after producing, exited 1 on it). Bounded: a broker that is down must not hold the abort
			// for a message timeout.
			flushCtx, cancel := context.WithTimeout(work, abortFlushBound)
			_ = l.Producer.Flush(flushCtx)
			cancel()
		}
		// Abort is retried like commit: its outcome must be known before a new transaction can begin.
		if aerr := l.retry(settle, l.Producer.Abort); aerr != nil {
			return fmt.Errorf("abort transaction after %s failed: %w", ab.step, aerr)
		}
		l.open = false
	}
	return err
}

func (l *Loop) transactSteps(work, settle context.Context, b *batch) error {
	b.began = time.Now()
	if err := l.Producer.Begin(); err != nil {
		return l.classify("begin", err)
	}
	l.open = !l.AtLeastOnce
	b.producing = time.Now()
	err := l.produceBatch(work, b)
	// The producer has copied the records: the batch's records and everything built on them can go.
	b.in, b.kept, b.out, b.from, b.changelog = nil, nil, nil, nil, nil
	if err != nil {
		return err
	}
	b.offsetting = time.Now()
	if l.AtLeastOnce {
		b.committing = b.offsetting
		// Offsets only after every output is acknowledged: the order that makes at_least_once at least once.
		if err := l.Producer.Flush(work); err != nil {
			return l.classify("flush", err)
		}
		l.inTransaction()
		if err := l.Consumer.CommitOffsets(b.offsets); err != nil {
			// A rebalance took the partitions (or the coordinator moved): redo from the committed offsets.
			return &abortable{step: "commit_offsets", err: err}
		}
		return nil
	}
	l.inTransaction()
	// Taken as late as possible: a rebalance that completed while the batch was prepared moved the group to a
	// newer generation, and offsets sent with the older one would be refused. The batch's partitions are still
	// ours, since revocations wait for this transaction (KIP-447 fences a member that lost them anyway).
	group, err := l.Consumer.GroupMetadata()
	if errors.Is(err, consume.ErrAssignmentLost) {
		return &abortable{step: "assignment_lost", err: err, lost: true}
	}
	if err != nil {
		return err
	}
	// Retried with the very same offsets and metadata: librdkafka may have half-sent them.
	if err := l.retry(work, func() error { return l.Producer.SendOffsets(work, b.offsets, group) }); err != nil {
		return l.classify("send_offsets", err)
	}
	if l.Faults.AbortRatio > 0 && rand.Float64() < l.Faults.AbortRatio {
		// Everything is written and the offsets are in the transaction: the worst moment to abort, which is why
		// the fault tests abort here.
		return &abortable{step: "test_abort", err: errors.New("aborted on purpose (PROCESSOR_TEST_ABORT_RATIO)")}
	}
	b.committing = time.Now()
	// Not bounded by work: giving up on a retriable commit would leave its outcome unknown. Past the shutdown
	// deadline it is retried for at most a transaction timeout, after which the broker has aborted the
	// transaction anyway.
	if err := l.retry(settle, l.Producer.Commit); err != nil {
		return l.classify("commit", err)
	}
	l.open = false
	return nil
}

// produceBatch hands the batch's outputs, dead letters and changelog records to the producer.
func (l *Loop) produceBatch(work context.Context, b *batch) error {
	if limit, ok := l.TopicMaxBytes[l.DeadLetterTopic]; ok {
		for _, d := range b.out[b.outputs:] {
			if n := produce.EncodedSize(d) + produce.RecordBatchOverhead; n > limit {
				// Nothing is left to fall back on: the broker would refuse the batch on every redo.
				return fmt.Errorf("dead letter of %s is %d bytes in a record batch, above the dead-letter topic %q's "+
					"max.message.bytes (%d): raise the topic's max.message.bytes", headerValue(d, stream.SourceHeader), n, l.DeadLetterTopic, limit)
			}
		}
	}
	// A record refused for itself does not end the transaction: the others are offered too, so that one redo
	// of the batch deals with all of its refused records rather than one redo each.
	refused, err := l.Producer.Produce(work, b.out)
	if err != nil && !errors.Is(err, produce.ErrRecordRefused) {
		return l.classify("produce", err)
	}
	if len(refused) > 0 {
		inputs, ferr := refusedInputs(b, refused, err)
		if ferr != nil {
			return ferr
		}
		return &abortable{step: "produce", err: err, refusedInputs: inputs}
	}
	if len(b.changelog) > 0 {
		if err := l.Producer.ProduceToPartitions(work, b.changelog); err != nil {
			return l.classify("produce_changelog", err)
		}
	}
	return nil
}

// abortable is a failure after which the batch is aborted, the input rewound and the batch redone; step names
// where it happened, for the aborted-transactions metric.
type abortable struct {
	step string
	err  error
	// refusedInputs are the inputs of the records the producer refused for themselves (produce.ErrRecordRefused).
	refusedInputs []position
	// lost says the member's group session ended before the batch's offsets were sent.
	lost bool
}

func (e *abortable) Error() string { return e.err.Error() }
func (e *abortable) Unwrap() error { return e.err }

// asAbortable returns err's *abortable, nil if it has none.
func asAbortable(err error) *abortable {
	var ab *abortable
	if errors.As(err, &ab) {
		return ab
	}
	return nil
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

// headerValue is the value of r's last header named key, "" when it has none.
func headerValue(r stream.Record, key string) string {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == key {
			return string(r.Headers[i].Value)
		}
	}
	return ""
}

// inTransaction calls Faults.InTransaction, if set, with the batch's number: in exactly_once after the outputs
// are produced and before the offsets are sent, in at_least_once after they are delivered and before the
// offsets are committed.
func (l *Loop) inTransaction() {
	if l.Faults.InTransaction != nil {
		l.transactions++
		l.Faults.InTransaction(l.transactions)
	}
}
