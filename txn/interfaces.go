package txn

import (
	"context"
	"time"

	"github.com/eosproc/eosproc/dedupe"
	"github.com/eosproc/eosproc/produce"
	"github.com/eosproc/eosproc/stream"
)

// Consumer is the input side of the loop (consume.Consumer). Every method but GroupMetadata and CommitOffsets
// is called from the loop's goroutine; those two are called by the transaction in flight, beside the next
// assembly.
type Consumer interface {
	// Assigned returns the partitions this member owns now.
	Assigned() []stream.TopicPartition
	// Lags returns the unprocessed records per assigned partition, -1 where not known yet.
	Lags() map[stream.TopicPartition]int64
	// Batching returns the batch limits Assemble works to: the batch interval and the most records in a batch.
	Batching() (interval time.Duration, maxRecords int)
	// Assemble polls one batch within the budgets; revoked partitions' records are dropped inside it, after the
	// revoke barrier returned.
	Assemble(ctx context.Context, budgets map[stream.TopicPartition]int64) ([]stream.Record, error)
	// SetRevokeBarrier sets what a revocation or loss of partitions waits for inside Assemble before their
	// records are dropped and the partitions go; it is called with the partitions going.
	SetRevokeBarrier(wait func(revoked []stream.TopicPartition))
	// SetBatchHold sets what keeps a batch collecting past its interval, while it reports true.
	SetBatchHold(hold func() bool)
	// SetBatchSink sets what Assemble shows the batch so far after every poll that changed it: records are only
	// appended to it, and a revocation drops only the revoked partitions' records. An error from the sink ends
	// Assemble, which returns it.
	SetBatchSink(sink func(batch []stream.Record) error)
	// Rewind moves every assigned partition back to its committed offset and forgets carried records.
	Rewind(ctx context.Context) error
	// GroupMetadata identifies the member and its generation to the transaction coordinator.
	GroupMetadata() (*produce.GroupMetadata, error)
	// CommitOffsets commits offsets outside any transaction (at_least_once only).
	CommitOffsets(offsets map[stream.TopicPartition]int64) error
	// TakeRevoked returns the partitions revoked or lost since the last call.
	TakeRevoked() []stream.TopicPartition
}

// Producer is the output side of the loop (produce.Producer). Its errors carry a produce.Class. Only one
// goroutine at a time calls it: the transaction in flight.
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
	// Flush waits for every delivery and reports the batch's first failure: at_least_once's commit point, and
	// exactly_once's wait before aborting a transaction whose outputs were all produced.
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
	// Processing is the work the batch itself took: de-duplication, transform and its transaction (begin,
	// produce, send offsets, commit), whether done during its assembly (as its records arrived) or after it.
	// Waiting for the previous batch's transaction is not in it.
	Processing time.Duration
	// Duration is the whole batch, from the start of its assembly to the end of its commit.
	Duration time.Duration
	// SchedulingDelay is how long the batch, once assembled, waited for the previous batch's transaction: the
	// delay the pipeline adds when transactions take longer than assembling.
	SchedulingDelay time.Duration
	Interval        time.Duration
	// MaxRecords is the most records a batch may hold (the consumer's batch size).
	MaxRecords int
}

// Deduplicator drops inputs whose identity was already seen (package dedupe). Its state changes travel as
// changelog records in the batch's own transaction, so they commit or roll back with the outputs and offsets;
// Committed and Aborted tell it which happened. At most one batch's changes are pending at a time: the loop
// filters a batch only once the previous one's transaction is settled.
type Deduplicator interface {
	// Filter returns the records to transform, the records without an identity (dead-lettered with the error),
	// and the changelog records to write in this batch's transaction.
	Filter(ctx context.Context, in []stream.Record) (kept []stream.Record, rejected []dedupe.Rejected, changelog []stream.Record, err error)
	Committed()
	Aborted()
	// Ready reports whether a partition's state is restored; if not, it starts restoring it in the background.
	Ready(ctx context.Context, tp stream.TopicPartition) (bool, error)
	// Forget drops the state of partitions this member lost, and stops their restores.
	Forget(partitions []stream.TopicPartition)
}

// Unlimited is the Budgeter used without backpressure: every partition may fill the whole batch, and the batch
// size cap (MaxRecords, the consumer's) is what shares a batch between partitions.
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

// Faults injects failures, for fault tests only; the zero value injects none.
type Faults struct {
	// AbortRatio is the share of transactions aborted on purpose just before commit.
	AbortRatio float64
	// InTransaction is called in every transaction after its outputs are produced and before its offsets are
	// sent (at_least_once: after the outputs are delivered and before the offsets are committed), with the
	// transaction's number (from 1): the moment a frozen or killed process leaves the most behind.
	InTransaction func(n int)
}
