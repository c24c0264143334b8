// Package produce owns the processor's producers: transactional and idempotent for exactly_once (by default two,
// each with its own transactional.id, taking the transactions in turn), idempotent only for at_least_once. It initialises, begins, produces, sends offsets, commits and aborts; it tracks delivery
// reports; and it classifies every failure as retriable, abortable or fatal (see Class). It never polls a
// consumer and never decides what to do about an error: that policy is the txn package's.
package produce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/internal/librdkafka"
	"github.com/eosproc/eosproc/internal/rdkafka"
	"github.com/eosproc/eosproc/stream"
)

// GroupMetadata identifies a consumer group member and its generation to the transaction coordinator (package
// consume takes it from its consumer).
type GroupMetadata = librdkafka.GroupMetadata

// Config is what the producer needs. Zero values are not all usable: Brokers and, for transactions,
// TransactionalID and TransactionTimeout must be set.
type Config struct {
	Brokers string
	// TransactionalID makes the producer transactional. It must be stable across restarts of the same instance,
	// so that InitTransactions fences the previous incarnation (a zombie that may still be trying to commit), and
	// unique among live instances, or they fence each other in turn. Empty means at_least_once: no transactions.
	TransactionalID string
	// TransactionTimeout is how long the broker lets a transaction stay open before aborting it itself; it bounds
	// how long a crashed instance's open transaction blocks read_committed readers of the output partitions.
	TransactionTimeout time.Duration
	// MessageTimeout bounds a record's delivery, retries included. It must be below TransactionTimeout: a record
	// still being retried after the broker aborted the transaction would be rejected with a fatal epoch error.
	MessageTimeout time.Duration
	// GroupID names the consumer group in error messages.
	GroupID string
	// Properties are passed to librdkafka as they are (TLS, SASL, tuning); the keys the guarantees depend on are
	// refused.
	Properties map[string]string
	Logger     *slog.Logger
	// OnError, if set, is called (from the delivery goroutine) with each non-fatal error the client reports:
	// broker down, authentication or TLS handshake refused. The processor watches it for failures an operator
	// must fix.
	OnError func(kafka.Error)
	// OnStats, if set, receives librdkafka's statistics (JSON, see its STATISTICS.md) every
	// statistics.interval.ms: rdkafka.StatsInterval unless Properties set it (0 turns them off).
	OnStats func(json []byte)
}

// Producer wraps one librdkafka producer. Its methods are called from one goroutine (the loop); delivery reports
// are counted inside librdkafka's poll, in C.
type Producer struct {
	k              *librdkafka.Producer
	transactional  bool
	groupID        string
	log            *slog.Logger
	errLog         *rdkafka.ErrorLog
	onError        func(kafka.Error)
	maxRecordBytes int
	// stallBound is how long a transactional call may stay inside librdkafka; past it the producer is wedged.
	stallBound time.Duration
	// sendOffsetsTimeout bounds one SendOffsets call.
	sendOffsetsTimeout time.Duration
	wedged             atomic.Bool

	// epoch numbers the current transaction (or at_least_once batch); each record carries it, so a late report
	// for a record of an aborted transaction (purged by the abort) is not blamed on the next one.
	epoch uint64
}

// OwnedProperties are the librdkafka properties the producer sets itself, each with why; Config.Properties must
// not set them (or their aliases), and the processor refuses them in its configuration. A test keeps this list
// and what New sets the same.
var OwnedProperties = map[string]string{
	"bootstrap.servers":      "the brokers are configured on their own",
	"metadata.broker.list":   "the brokers are configured on their own",
	"enable.idempotence":     "transactions need the idempotent producer",
	"acks":                   "the idempotent producer needs acks=all",
	"request.required.acks":  "the idempotent producer needs acks=all",
	"linger.ms":              "the processor sizes produce requests from its batches (a commit flushes anyway)",
	"queue.buffering.max.ms": "the processor sizes produce requests from its batches (a commit flushes anyway)",
	"message.timeout.ms":     "derived from the transaction timeout unless the processor's configuration sets it",
	"delivery.timeout.ms":    "derived from the transaction timeout unless the processor's configuration sets it",
	"transactional.id":       "derived from the application and instance ids",
	"transaction.timeout.ms": "the transaction timeout is configured on its own",
}

// ownedProperties are the values of the OwnedProperties that New sets for cfg.
func ownedProperties(cfg Config) map[string]string {
	owned := map[string]string{
		"bootstrap.servers":  cfg.Brokers,
		"enable.idempotence": "true",
		"acks":               "all",
		// Transactions commit every batch interval; a short linger fills produce requests without adding much
		// to the commit latency (commit flushes anyway).
		"linger.ms": "10",
	}
	if cfg.MessageTimeout > 0 {
		owned["message.timeout.ms"] = strconv.FormatInt(cfg.MessageTimeout.Milliseconds(), 10)
	}
	if cfg.TransactionalID != "" {
		owned["transactional.id"] = cfg.TransactionalID
		owned["transaction.timeout.ms"] = strconv.FormatInt(cfg.TransactionTimeout.Milliseconds(), 10)
	}
	return owned
}

// clientProperties is every librdkafka property of the producer: what it owns, its defaults, and the user's
// properties over the defaults.
func clientProperties(cfg Config) (map[string]string, error) {
	passThrough := map[string]string{
		// Partitions added to a topic (a de-duplication changelog grows with its input) become known within
		// this interval; librdkafka's default is 5 minutes, during which producing to them is redone.
		"topic.metadata.refresh.interval.ms": "5000",
		// Right after a commit the coordinator is still writing that transaction's markers, and refuses the next
		// transaction's AddPartitionsToTxn and AddOffsetsToTxn with CONCURRENT_TRANSACTIONS until it is done.
		// librdkafka retries AddPartitionsToTxn after 20 ms but AddOffsetsToTxn after retry.backoff.ms (100 ms by
		// default): with batches of 100 ms, 7 in 100 transactions of a drain waited that long to send their
		// offsets. A retry of anything else still backs off exponentially from here up to retry.backoff.max.ms.
		"retry.backoff.ms": "20",
		// A request refused again backs off twice as long each time, up to this: CONCURRENT_TRANSACTIONS answers
		// to AddOffsetsToTxn while the coordinator is slow to write the last commit's markers waited 20, 40, 80
		// and 160 ms (librdkafka's default bound is 1 s). At 100,000 records/s in 100 ms batches, on a machine
		// where the markers were slow, sending offsets took up to 363 ms (99th percentile 139 ms) and the
		// end-to-end p99 was 248-326 ms; with 100 ms at most, 94 ms (72 ms) and 199-229 ms.
		"retry.backoff.max.ms": "100",
		// Records wait in librdkafka's queue, a few hundred bytes of bookkeeping each beside their bytes, until
		// their delivery is reported; a batch handed over at once (librdkafka's default allows 100,000) held
		// most of a 50,000-record batch there. This is well above what keeps the broker busy (its rate times a
		// produce round trip): draining 2,000,000 x 100 B in 50,000-record batches, 20,000 peaked at 86-103 MB
		// RSS (median 92), 30,000 at 93-118 (98) and librdkafka's default at 96-124, all as fast, and 1 KB records
		// drained as fast too. A full queue makes Produce wait for room, not for a flush.
		"queue.buffering.max.messages": "20000",
		rdkafka.SparseConnections:      "false",
	}
	if cfg.OnStats != nil {
		passThrough["statistics.interval.ms"] = strconv.FormatInt(rdkafka.StatsInterval.Milliseconds(), 10)
	}
	if _, ok := cfg.Properties["retry.backoff.ms"]; ok {
		// librdkafka refuses a bound below the user's backoff; the user's backoff comes with librdkafka's bound.
		delete(passThrough, "retry.backoff.max.ms")
	}
	maps.Copy(passThrough, cfg.Properties)
	props, err := rdkafka.Properties(ownedProperties(cfg), OwnedProperties, passThrough)
	if err != nil {
		return nil, fmt.Errorf("configure producer: %w", err)
	}
	return props, nil
}

// New creates the producer and starts serving its delivery reports. Call InitTransactions before anything else
// when the producer is transactional.
func New(cfg Config) (*Producer, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	props, err := clientProperties(cfg)
	if err != nil {
		return nil, err
	}
	p := &Producer{
		transactional:  cfg.TransactionalID != "",
		groupID:        cfg.GroupID,
		log:            log,
		errLog:         &rdkafka.ErrorLog{Log: log},
		onError:        cfg.OnError,
		stallBound:     max(cfg.TransactionTimeout, attemptTimeout) + stallMargin,
		maxRecordBytes: defaultMaxRecordBytes,
		// A group coordinator that fails over (its broker died: the controller notices after the broker's
		// session timeout, then the new leader loads the group) takes several seconds to answer; librdkafka
		// retries TxnOffsetCommit until this runs out, then makes the transaction abortable. Half the
		// transaction timeout leaves the other half to produce and commit before the broker aborts it.
		sendOffsetsTimeout: max(attemptTimeout, cfg.TransactionTimeout/2),
	}
	clientLog := log.With("component", "producer")
	p.k, err = librdkafka.NewProducer(props, librdkafka.Hooks{
		Error: p.clientError,
		Log:   func(e kafka.LogEvent) { rdkafka.Log(clientLog, e) },
		Stats: cfg.OnStats,
	})
	if err != nil {
		return nil, fmt.Errorf("create producer: %w", err)
	}
	if v, ok := cfg.Properties["message.max.bytes"]; ok {
		// librdkafka has accepted the value, so it is a number.
		p.maxRecordBytes, _ = strconv.Atoi(v)
	}
	return p, nil
}

// clientError handles librdkafka's error events, served on the producer's poll goroutine.
func (p *Producer) clientError(e kafka.Error) {
	if e.IsFatal() {
		p.log.Error("producer fatal error", "error", e)
		return
	}
	p.errLog.Warn("producer error", e)
	if p.onError != nil {
		p.onError(e)
	}
}

// InitTransactions registers the transactional.id with its coordinator: it aborts (or completes) whatever
// transaction a previous incarnation left open and bumps the producer epoch, which fences that incarnation.
// With no deadline in ctx librdkafka waits up to twice the transaction timeout.
func (p *Producer) InitTransactions(ctx context.Context) error {
	if !p.transactional {
		return nil
	}
	// librdkafka does not watch ctx, only its deadline, and without one it waits up to the transaction timeout.
	// A short attempt returns a retriable timeout instead, so the caller's retry loop can notice a shutdown.
	attempt, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	return p.guard(ctx, "init transactions", func() error { return p.k.InitTransactions(timeLeft(attempt)) })
}

// attemptTimeout bounds one InitTransactions call, and is the least a SendOffsets call gets. librdkafka then returns a retriable timeout
// that the caller repeats with the same arguments, checking between attempts whether it is shutting down.
const attemptTimeout = 5 * time.Second

// timeLeft is the time until ctx's deadline, for librdkafka calls that take a timeout instead of a context.
func timeLeft(ctx context.Context) time.Duration {
	d, ok := ctx.Deadline()
	if !ok {
		return -1
	}
	return max(time.Until(d), time.Millisecond)
}

// Begin starts a transaction, or an at_least_once batch, and forgets the previous one's delivery failures.
func (p *Producer) Begin() error {
	p.epoch++
	p.k.BeginEpoch(p.epoch)
	if !p.transactional {
		return nil
	}
	return wrap("begin transaction", p.k.BeginTransaction())
}

// Produce enqueues records for their topics (r.Topic), in order, waiting while the local queue is full. A record
// librdkafka refuses for itself (larger than message.max.bytes) does not stop the others: its index in recs is
// returned in refused, and err is an abortable ErrRecordRefused. Any other refusal stops at once.
func (p *Producer) Produce(ctx context.Context, recs []stream.Record) (refused []int, err error) {
	var first error
	for done := 0; done < len(recs); {
		n, err := p.k.Produce(recs[done:], "", false)
		done += n
		if err == nil {
			break
		}
		err = p.produceError(ctx, recs[done].Topic, err)
		if !errors.Is(err, ErrRecordRefused) {
			if errors.Is(err, errQueueFull) {
				continue
			}
			return refused, err
		}
		refused = append(refused, done)
		if first == nil {
			first = err
		}
		done++
	}
	return refused, first
}

// ProduceToPartitions enqueues each record for partition r.Partition of r.Topic, for state that is
// co-partitioned with the input (a changelog) rather than placed by its key.
func (p *Producer) ProduceToPartitions(ctx context.Context, recs []stream.Record) error {
	for done := 0; done < len(recs); {
		n, err := p.k.Produce(recs[done:], "", true)
		done += n
		if err == nil {
			return nil
		}
		if err = p.produceError(ctx, recs[done].Topic, err); !errors.Is(err, errQueueFull) {
			return err
		}
	}
	return nil
}

// queueFullWait bounds one wait for room in a full producer queue, between checks of the caller's context.
const queueFullWait = 50 * time.Millisecond

// errQueueFull is produceError's answer when librdkafka's queue was full and the caller may try again.
var errQueueFull = errors.New("producer queue full")

// produceError classifies a refused record. A full local queue is waited out (errQueueFull: try again) while ctx
// lasts. librdkafka refuses records with a state error once the transaction has failed (a delivery failed, the
// broker aborted it): that is abortable, unless the producer as a whole has failed.
func (p *Producer) produceError(ctx context.Context, topic string, err error) error {
	op := "produce to " + topic
	var ke interface{ Code() kafka.ErrorCode }
	if errors.As(err, &ke) && ke.Code() == kafka.ErrQueueFull {
		// The queue drains as the broker acknowledges: wait for some room, in slices short enough to notice ctx.
		p.k.WaitForRoom(queueFullWait)
		if ctx.Err() != nil {
			return &Error{Op: op, Class: Abortable, Err: context.Cause(ctx)}
		}
		return errQueueFull
	}
	if fatal := p.k.FatalError(); fatal != nil {
		return &Error{Op: op, Class: Fatal, Err: fatal}
	}
	if errors.As(err, &ke) && ke.Code() == kafka.ErrState {
		return &Error{Op: op, Class: Abortable, Err: err}
	}
	if errors.As(err, &ke) && ke.Code() == kafka.ErrUnknownPartition {
		// A partition added to the topic a moment ago (de-duplication grows its changelog with the input) that
		// the producer's metadata does not know yet: the batch is redone once the metadata is refreshed.
		return &Error{Op: op, Class: Abortable, Err: fmt.Errorf("partition not yet in the producer's metadata (just added?): %w", err)}
	}
	if errors.As(err, &ke) && ke.Code() == kafka.ErrMsgSizeTooLarge {
		return &Error{Op: op, Class: Abortable, Err: fmt.Errorf("%w: %w", ErrRecordRefused, err)}
	}
	return wrap(op, err)
}

// defaultMaxRecordBytes is librdkafka's default message.max.bytes.
const defaultMaxRecordBytes = 1_000_000

// MaxRecordBytes is the producer's message.max.bytes: a record whose EncodedSize is above it is refused.
func (p *Producer) MaxRecordBytes() int { return p.maxRecordBytes }

// EncodedSize bounds from above the size librdkafka compares with message.max.bytes when a record is produced:
// key, value, the record's framing (librdkafka 2.11 counts 36 bytes; 64 here), and each header's key and value
// with their length prefixes (counted at their 5-byte maximum).
func EncodedSize(r stream.Record) int {
	n := len(r.Key) + len(r.Value) + 64
	for _, h := range r.Headers {
		n += 10 + len(h.Key) + len(h.Value)
	}
	return n
}

// RecordBatchOverhead is the size of a record batch's header (Kafka's v2 format): a record sent alone takes its
// EncodedSize plus this much of its topic's max.message.bytes.
const RecordBatchOverhead = 61

// ErrRecordRefused marks a Produce refused because of the record itself (larger than message.max.bytes): the
// same record would be refused again, so retrying the batch as it is cannot help.
var ErrRecordRefused = errors.New("record refused")

// SendOffsets adds the consumer's next offsets to the transaction: they are committed to the group if and only if
// the transaction commits. group must be the consumer's metadata taken after the batch was polled: the
// coordinator compares its generation with the group's and refuses offsets from a member that has since lost
// its partitions (KIP-447), which is what keeps a zombie from committing over its successor.
func (p *Producer) SendOffsets(ctx context.Context, offsets map[stream.TopicPartition]int64, group *GroupMetadata) error {
	parts := make([]kafka.TopicPartition, 0, len(offsets))
	for tp, off := range offsets {
		topic := tp.Topic
		parts = append(parts, kafka.TopicPartition{Topic: &topic, Partition: tp.Partition, Offset: kafka.Offset(off)})
	}
	op := fmt.Sprintf("send offsets for group %q (%d partitions)", p.groupID, len(parts))
	// Without a deadline librdkafka waits the remaining transaction time, longer still when the coordinator's
	// connection went silent (a network cut leaves it half-open until socket.timeout.ms): seen past a minute,
	// which outlasted the shutdown bound. A bounded attempt, and ctx's deadline at shutdown, keep the caller in
	// charge.
	attempt, cancel := context.WithTimeout(ctx, p.sendOffsetsTimeout)
	defer cancel()
	return p.guard(ctx, op, func() error { return p.k.SendOffsetsToTransaction(parts, group, timeLeft(attempt)) })
}

// Commit commits the transaction. A delivery that already failed makes it abortable without asking the broker.
// librdkafka is given no deadline, so it waits as long as the transaction may still live: giving up earlier would
// leave the outcome unknown, and the retry would have to ask again anyway.
func (p *Producer) Commit() error {
	if err := p.DeliveryError(); err != nil {
		return deliveryFailure("commit transaction", err)
	}
	return p.guard(context.Background(), "commit transaction", func() error { return p.k.CommitTransaction(-1) })
}

// Abort aborts the transaction; librdkafka purges the records not yet delivered (their reports arrive with a
// purge error and are ignored) and tells the coordinator to write abort markers, so read_committed readers skip
// everything the transaction wrote.
func (p *Producer) Abort() error {
	if !p.transactional {
		return nil
	}
	return p.guard(context.Background(), "abort transaction", func() error { return p.k.AbortTransaction(-1) })
}

// stallMargin is how long past the transaction timeout a transactional call may still be inside librdkafka. By
// then the broker has aborted the transaction, so a healthy client has long returned an error.
const stallMargin = 30 * time.Second

// guard runs a blocking transactional call of librdkafka's and classifies its error, but returns a fatal error if
// the call is still running after stallBound, or attemptTimeout after ctx ended (the caller gave up: shutting
// down). librdkafka does not always honour its own timeouts: with a coordinator unreachable,
// send_offsets_to_transaction can wait forever (confluentinc/librdkafka#5456, open in 2.11), and commit and abort
// have no client-side bound at all. A C call cannot be interrupted, so the call is left running and the producer
// is marked wedged: the process must exit, and its next incarnation's InitTransactions settles the transaction
// this one left open. Exactly once holds either way; only liveness is at stake, and an exit is what restores it.
func (p *Producer) guard(ctx context.Context, op string, call func() error) error {
	done := make(chan error, 1)
	go func() { done <- call() }()
	stall := time.NewTimer(p.stallBound)
	defer stall.Stop()
	select {
	case err := <-done:
		return wrap(op, err)
	case <-stall.C:
		return p.wedge(op, fmt.Sprintf("after %s (transaction timeout plus %s)", p.stallBound, stallMargin))
	case <-ctx.Done():
	}
	// A call given its own deadline returns within it, and the longest such deadline is a SendOffsets
	// attempt's: the grace waits that long, so that a call still inside its own bound is not taken for a stuck
	// one (and the process for wedged) at shutdown.
	wait := max(attemptTimeout, p.sendOffsetsTimeout)
	grace := time.NewTimer(wait)
	defer grace.Stop()
	select {
	case err := <-done:
		return wrap(op, err)
	case <-grace.C:
		return p.wedge(op, fmt.Sprintf("%s after its caller gave up (%v)", wait, context.Cause(ctx)))
	}
}

func (p *Producer) wedge(op, how string) error {
	p.wedged.Store(true)
	return &Error{Op: op, Class: Fatal, Err: fmt.Errorf("%w: still inside librdkafka %s; "+
		"exiting so that a new incarnation fences this one and settles its transaction", ErrWedged, how)}
}

// ErrWedged says that a librdkafka call did not return in time and the producer cannot be used again.
var ErrWedged = errors.New("producer wedged")

// Flush waits until every record produced so far has a delivery report, then returns the current batch's first
// delivery failure as abortable. It is the at_least_once commit point: only after it returns nil may the caller
// commit the consumer's offsets.
func (p *Producer) Flush(ctx context.Context) error {
	for p.k.Pending() > 0 {
		if ctx.Err() != nil {
			return &Error{Op: "flush", Class: Abortable, Err: context.Cause(ctx)}
		}
		_ = p.k.Flush(100 * time.Millisecond)
	}
	if err := p.DeliveryError(); err != nil {
		return deliveryFailure("flush", err)
	}
	return nil
}

// deliveryFailure classifies a failed delivery: abortable (the batch is redone), except a record batch the broker
// refused as too large. The processor checks each output against its topic's max.message.bytes, read at start, and
// keeps the producer's batch.size within it, so such a refusal means a topic's limit was lowered since: redoing
// the batch would be refused again for ever, and a restart reads the new limit (and dead-letters what exceeds it).
func deliveryFailure(op string, err error) error {
	var ke interface{ Code() kafka.ErrorCode }
	if errors.As(err, &ke) && (ke.Code() == kafka.ErrMsgSizeTooLarge || ke.Code() == kafka.ErrRecordListTooLarge) {
		return &Error{Op: op, Class: Fatal, Err: fmt.Errorf("the broker refused a record batch as too large for its "+
			"topic: the topic's max.message.bytes was lowered after the processor started (it reads the limits at "+
			"start, dead-letters larger records and sizes its batches below them); the restart applies the new limit: %w", err)}
	}
	return &Error{Op: op, Class: Abortable, Err: err}
}

// DeliveryError returns the current transaction's first failed delivery, if any.
func (p *Producer) DeliveryError() error { return p.k.DeliveryError() }

// Close closes the producer. An open transaction is left to the broker, which aborts it at its timeout or when
// the next incarnation calls InitTransactions; callers abort first when they can.
func (p *Producer) Close() {
	if p.wedged.Load() {
		// librdkafka would wait for the call still running inside it, which is why the process is exiting.
		p.log.Warn("producer left open: a call into librdkafka never returned")
		return
	}
	p.k.Close()
}
