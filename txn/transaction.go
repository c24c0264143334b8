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

// batch is one micro-batch on its way through the loop: assembled on the loop's goroutine and, once the
// previous transaction has committed, written while it is still being assembled; then finished (the rest written,
// the offsets sent, the commit) by its transaction on a goroutine of its own, beside the next batch's assembly.
type batch struct {
	// The inputs, as assembled (the consumer's batch so far, during the assembly), until the transaction has
	// handed the last outputs to the producer (which copies them): then every record of the batch is released,
	// so that two batches' records are not held at once.
	in []stream.Record
	// What outlives the records: their number, the offsets to commit, the records per partition, and (debug log
	// only) their ranges.
	records      int
	offsets      map[stream.TopicPartition]int64
	perPartition map[stream.TopicPartition]int64
	ranges       string
	// What is written so far: whether the transaction has begun, how many inputs (a prefix of in) are written,
	// and their partitions; written during the assembly counts the inputs written before it ended.
	begun        bool
	lane         *lane
	written      int
	writtenParts map[stream.TopicPartition]bool
	early        int
	// ready is what prepareRest prepared of the assembled batch's rest on the loop's goroutine (its first
	// writeChunk inputs, all of it with de-duplication), for the transaction to write.
	ready *chunk
	// handedOver is closed once the batch's transaction has prepared and handed over all of its inputs (or
	// failed to): preparing touches state of the loop's (the transform, the identity writer, the dead-letter
	// log), so the next batch's preparation waits for it.
	handedOver chan struct{}
	// delivered is closed once every record the batch's transaction wrote is acknowledged (after its offsets are
	// sent, before its commit): the next batch may then begin on the other lane, its records landing after all of
	// these in every partition. nil when transactions do not alternate between lanes.
	delivered chan struct{}
	// doomed says why a batch was abandoned during its assembly (its transaction aborted): *abortable, or fatal.
	doomed error
	// sawRevocation says partitions were revoked or lost during the assembly.
	sawRevocation bool
	// Counted as inputs are prepared: outputs written, every record written (outputs and dead letters), dead
	// letters per stage.
	outputs, produced int
	deadByStage       map[string]int

	// When each step began or ended, and how long the steps that run piecewise took in all, for the rate
	// controller, the metrics and the debug log. The transaction's goroutine writes its steps before it closes
	// its flight's done, and the loop reads them after.
	started, assembled, sent, began, offsetting, committing, ended time.Time
	preparation, producing, duringAssembly, preparedRest           time.Duration
}

// chunk is what a run of a batch's inputs becomes: the inputs left after de-duplication, what is written for
// them (the first outputs records are outputs, the rest dead letters), from[i] the index in kept of the input
// out[i] came from, and the de-duplication store's changelog records.
type chunk struct {
	inputs               int // how many of the batch's inputs it was prepared from
	kept, out, changelog []stream.Record
	from                 []int
	outputs              int
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
	b.sent, b.handedOver = time.Now(), make(chan struct{})
	if l.pipelined() {
		b.delivered = make(chan struct{})
	}
	go func() {
		defer close(f.done)
		f.err = l.transact(work, settle, b)
	}()
}

// awaitInFlight blocks until the transaction in flight, if any, has committed or aborted.
func (l *Loop) awaitInFlight() {
	if f := l.inflight; f != nil {
		<-f.done
	}
}

// revokeBarrier is what a revocation or loss, served inside Assemble on the loop's goroutine, waits for before
// the partitions go: the transaction in flight, so that their next owner reads the committed offsets it leaves,
// neither before it nor behind it. If the batch being assembled has begun its transaction and written records of
// a partition going, that transaction is aborted too, and the batch with it (the loop rewinds): committed, those
// records would be written again by the partition's next owner. Its other records that no transaction holds the
// consumer drops.
func (l *Loop) revokeBarrier(work, settle context.Context) func(revoked []stream.TopicPartition) {
	return func(revoked []stream.TopicPartition) {
		l.awaitInFlight()
		b := l.assembling
		if b != nil && len(revoked) > 0 {
			b.sawRevocation = true
		}
		if b == nil || b.doomed != nil || b.written == 0 {
			return
		}
		for _, tp := range revoked {
			if !b.writtenParts[tp] {
				continue
			}
			ab := &abortable{step: "revoked", err: fmt.Errorf("partition %s revoked or lost while the open transaction held records of it", tp)}
			b.doomed = ab
			if err := l.abortOpen(work, settle, b.lane, ab.step, true); err != nil {
				b.doomed = err
			}
			return
		}
	}
}

// writeAhead is the consumer's batch sink: once the previous transaction has committed (with an Alternate, once
// its records are delivered), the batch being assembled begins its own and writes its records (transformed,
// de-duplicated, dead letters and all) as they arrive, instead of all at once when the batch ends. A record then
// waits for its batch's offsets and commit, no longer for the whole batch to be written first. Until then records
// wait in the batch; if the previous transaction failed, nothing more is written and the loop drops the batch when
// it lands it. A failure aborts the open transaction and ends the assembly.
func (l *Loop) writeAhead(work, settle context.Context) func(batch []stream.Record) error {
	return func(in []stream.Record) error {
		b := l.assembling
		if b == nil {
			return nil
		}
		if b.doomed != nil {
			return b.doomed
		}
		if f := l.inflight; f != nil {
			switch {
			case closed(f.done):
				if f.err != nil {
					// The batch goes with the failed transaction when the loop lands it (and its own, if it
					// began on the other lane, is aborted then): nothing more is written.
					return nil
				}
				if !b.begun {
					committed, _ := l.land()
					l.committedEarly = l.committedEarly || committed
				}
			case b.begun, closed(f.batch.delivered):
				// Begins, or goes on, on the other lane while the previous transaction commits.
			default:
				return nil
			}
		}
		if l.Dedupe != nil && b.sawRevocation {
			// The revoked partitions' stores go only once the assembly ends (Forget): one of them assigned
			// back meanwhile must not be judged by the state it had before. The rest waits for the batch's end.
			return nil
		}
		start := time.Now()
		err := l.writeEarly(work, settle, b, in)
		b.duringAssembly += time.Since(start)
		l.beat()
		if err != nil {
			b.doomed = err
		}
		return err
	}
}

// inFlight reports whether a transaction is still running. It is the consumer's batch hold: a batch whose
// interval has passed keeps collecting while the transaction it must wait for runs, so that the loop absorbs what
// arrives meanwhile instead of idling (under load, a transaction slower than the interval would otherwise cap
// the loop at one interval's records per transaction).
func (l *Loop) inFlight() bool {
	f := l.inflight
	return f != nil && !closed(f.done)
}

// closed reports whether ch is closed; a nil ch never is.
func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// abortFlushBound is how long an abort waits for the transaction's outputs to be delivered first.
const abortFlushBound = 5 * time.Second

// transact finishes the batch's transaction (begin if it has not begun, write the inputs not written yet, send
// the offsets, commit) and, when a step fails abortably, aborts it before returning: whoever waits for the flight
// (a revocation, the next batch) finds the transaction settled.
func (l *Loop) transact(work, settle context.Context, b *batch) error {
	err := l.transactSteps(work, settle, b)
	b.ended = time.Now()
	if err == nil {
		// Counted here rather than when the loop lands the batch, up to an assembly later: a reader of the
		// output must not see more records than the metrics.
		l.Metrics.committed(b.records, b.outputs, b.deadByStage, b.ended.Sub(b.started), b.ended.Sub(b.committing))
	}
	if ab := asAbortable(err); ab != nil {
		// Any failure in writing the batch has aborted it already (write): this one came after every output was
		// handed over.
		if aerr := l.abortOpen(work, settle, b.lane, ab.step, true); aerr != nil {
			return aerr
		}
	}
	return err
}

// abortOpen aborts the open transaction, if one is, after letting what it produced be delivered (flush: records
// were handed over, not only refused): an abort that reaches the coordinator before the partitions these records
// add to the transaction is answered with a fatal INVALID_TXN_STATE (librdkafka 2.11; the chaos row deleting an
// input topic, whose lost partition aborts the batch right after producing, exited 1 on it). The wait is
// bounded: a broker that is down must not hold the abort for a message timeout. The abort itself is retried like
// a commit, as its outcome must be known before a new transaction can begin; an error means it failed for good
// (fatal).
func (l *Loop) abortOpen(work, settle context.Context, ln *lane, step string, flush bool) error {
	if ln == nil || !ln.open {
		return nil
	}
	if flush {
		flushCtx, cancel := context.WithTimeout(work, abortFlushBound)
		_ = ln.p.Flush(flushCtx)
		cancel()
	}
	if err := l.retry(settle, ln.p.Abort); err != nil {
		return fmt.Errorf("abort transaction after %s failed: %w", step, err)
	}
	ln.open = false
	return nil
}

// write hands the batch's inputs not written yet (in[b.written:], in being the batch so far) to the producer,
// prepared (b.ready) or preparing them now, and begins the transaction first if it has not begun. A record not
// tolerated (StopOnBadRecord) stops it before the transaction begins, if it has not; any failure once it has
// aborts it.
func (l *Loop) write(work, settle context.Context, b *batch, in []stream.Record) error {
	return l.abortOnFailure(work, settle, b, l.writeSteps(work, b, in))
}

// prepareRest prepares inputs of the assembled batch that were not written during its assembly, on the loop's
// goroutine, once the previous transaction has handed over its own batch but may still send its offsets and
// commit, for its transaction to write: all of them with de-duplication (its store is used on the loop's
// goroutine only), else the first writeChunk, and the transaction prepares the rest a chunk at a time as it
// writes them.
func (l *Loop) prepareRest(work, settle context.Context, b *batch) error {
	if b.ready != nil || b.written == len(b.in) {
		return nil
	}
	rest := b.in[b.written:]
	if l.Dedupe == nil {
		rest = rest[:min(len(rest), writeChunk)]
	}
	if f := l.inflight; f != nil {
		<-f.batch.handedOver
	}
	start := time.Now()
	c, err := l.prepare(work, b, rest)
	b.ready, b.preparedRest = c, time.Since(start)
	return l.abortOnFailure(work, settle, b, err)
}

// writeBeside writes the rest of the assembled batch on the other lane as soon as the transaction in flight has
// its records delivered, while that one commits, instead of after its commit: under a backlog a batch is full
// before the transaction before it has delivered, so writeAhead never began it. Nothing is written if that
// transaction fails or settles first (the loop lands it, then the batch's own transaction writes it).
func (l *Loop) writeBeside(work, settle context.Context, b *batch) error {
	f := l.inflight
	if !l.pipelined() || f == nil || b.written == len(b.in) {
		return nil
	}
	select {
	case <-f.done:
		return nil
	case <-f.batch.delivered:
		if closed(f.done) && f.err != nil {
			return nil // failed after its deliveries
		}
	}
	start := time.Now()
	err := l.writeEarly(work, settle, b, b.in)
	b.preparedRest += time.Since(start)
	return err
}

// writeEarly writes on the loop's goroutine, before the batch's transaction takes over (writeAhead,
// writeBeside), and remembers the inputs whose outputs the producer refused, for the redo, as land does for a
// transaction that failed in flight.
func (l *Loop) writeEarly(work, settle context.Context, b *batch, in []stream.Record) error {
	err := l.write(work, settle, b, in)
	if ab := asAbortable(err); ab != nil {
		l.rememberRefused(ab)
	}
	return err
}

// writeChunk is how many inputs the transaction prepares and writes at a time. The producer copies what it is
// handed, so only a chunk's outputs are ever in memory instead of a whole batch's beside the next batch's inputs
// (with 50,000-record batches of 100 B, the identity transform's outputs and source headers were 12 of the Go
// heap's 36 MB in use). Preparing more of the batch ahead gains little: preparing overlaps only the previous
// transaction's commit, tens of milliseconds.
const writeChunk = 4096

// abortOnFailure aborts the batch's transaction, if it has begun and is open, when err is abortable or a record
// not tolerated, and returns err (or the abort's failure). A batch whose transaction has not begun leaves
// l.open alone: it may be the previous batch's, still running beside it.
func (l *Loop) abortOnFailure(work, settle context.Context, b *batch, err error) error {
	if err == nil || !b.begun {
		return err
	}
	// What was handed over before the failure is let be delivered first: the earlier runs of the batch, and the
	// rest of a run a record of which the producer refused for itself.
	flush := b.written > 0
	step := ""
	var bad *notTolerated
	if ab := asAbortable(err); ab != nil {
		step, flush = ab.step, flush || len(ab.refusedInputs) > 0
	} else if errors.As(err, &bad) {
		step = "prepare"
	}
	if step != "" {
		if aerr := l.abortOpen(work, settle, b.lane, step, flush); aerr != nil {
			return aerr
		}
	}
	return err
}

func (l *Loop) writeSteps(work context.Context, b *batch, in []stream.Record) error {
	// A record refused for itself does not stop the writing: the rest of the batch is offered too, so that one
	// redo deals with all of its refused records rather than one redo each.
	var refused *abortable
	for {
		c := b.ready
		b.ready = nil
		if c == nil && b.written < len(in) {
			var err error
			if c, err = l.prepare(work, b, in[b.written:min(len(in), b.written+writeChunk)]); err != nil {
				return err
			}
		}
		if !b.begun {
			b.began, b.lane = time.Now(), l.nextLane()
			if err := b.lane.p.Begin(); err != nil {
				return l.classify("begin", err)
			}
			b.begun, b.lane.open = true, !l.AtLeastOnce
		}
		if c == nil {
			break
		}
		start := time.Now()
		err := l.produce(work, b.lane.p, c)
		b.producing += time.Since(start)
		if ab := asAbortable(err); ab != nil && len(ab.refusedInputs) > 0 {
			if refused == nil {
				refused = ab
			} else {
				refused.refusedInputs = append(refused.refusedInputs, ab.refusedInputs...)
			}
		} else if err != nil {
			return err
		}
		if b.writtenParts == nil {
			b.writtenParts = map[stream.TopicPartition]bool{}
		}
		var last stream.TopicPartition
		for i, r := range in[b.written : b.written+c.inputs] {
			if i == 0 || r.Topic != last.Topic || r.Partition != last.Partition {
				last = r.TopicPartition()
				b.writtenParts[last] = true
			}
		}
		b.written += c.inputs
	}
	if refused != nil {
		return refused
	}
	return nil
}

func (l *Loop) transactSteps(work, settle context.Context, b *batch) error {
	err := l.write(work, settle, b, b.in)
	// The producer has copied the records: the batch's records can go.
	b.in = nil
	close(b.handedOver)
	if err != nil {
		return err
	}
	b.offsetting = time.Now()
	if l.AtLeastOnce {
		b.committing = b.offsetting
		// Offsets only after every output is acknowledged: the order that makes at_least_once at least once.
		if err := b.lane.p.Flush(work); err != nil {
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
	if err := l.retry(work, func() error { return b.lane.p.SendOffsets(work, b.offsets, group) }); err != nil {
		return l.classify("send_offsets", err)
	}
	if l.Faults.AbortRatio > 0 && rand.Float64() < l.Faults.AbortRatio {
		// Everything is written and the offsets are in the transaction: the worst moment to abort, which is why
		// the fault tests abort here.
		return &abortable{step: "test_abort", err: errors.New("aborted on purpose (PROCESSOR_TEST_ABORT_RATIO)")}
	}
	if b.delivered != nil {
		// Once every record is acknowledged the next batch may write on the other lane: its records then follow
		// all of these in every partition, as one producer's would. The commit, and the coordinator's writing of
		// its markers, which the next transaction on this producer would have to wait for, go on beside it. (The
		// offsets were sent first: their round trips overlap the deliveries.)
		if err := b.lane.p.Flush(work); err != nil {
			return l.classify("flush", err)
		}
		close(b.delivered)
	}
	b.committing = time.Now()
	// Not bounded by work: giving up on a retriable commit would leave its outcome unknown. Past the shutdown
	// deadline it is retried for at most a transaction timeout, after which the broker has aborted the
	// transaction anyway.
	if err := l.retry(settle, b.lane.p.Commit); err != nil {
		return l.classify("commit", err)
	}
	b.lane.open = false
	return nil
}

// produce hands a chunk's outputs, dead letters and changelog records to the producer p.
func (l *Loop) produce(work context.Context, p Producer, c *chunk) error {
	if limit, ok := l.TopicMaxBytes[l.DeadLetterTopic]; ok {
		for _, d := range c.out[c.outputs:] {
			if n := produce.EncodedSize(d) + produce.RecordBatchOverhead; n > limit {
				// Nothing is left to fall back on: the broker would refuse the batch on every redo.
				return fmt.Errorf("dead letter of %s is %d bytes in a record batch, above the dead-letter topic %q's "+
					"max.message.bytes (%d): raise the topic's max.message.bytes", headerValue(d, stream.SourceHeader), n, l.DeadLetterTopic, limit)
			}
		}
	}
	// A record refused for itself does not end the transaction: the others are offered too, so that one redo
	// of the batch deals with all of its refused records rather than one redo each.
	refused, err := p.Produce(work, c.out)
	if err != nil && !errors.Is(err, produce.ErrRecordRefused) {
		return l.classify("produce", err)
	}
	if len(refused) > 0 {
		inputs, ferr := refusedInputs(c, refused, err)
		if ferr != nil {
			return ferr
		}
		return &abortable{step: "produce", err: err, refusedInputs: inputs}
	}
	if len(c.changelog) > 0 {
		if err := p.ProduceToPartitions(work, c.changelog); err != nil {
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
