// Package produce owns the processor's one producer: transactional and idempotent for exactly_once, idempotent
// only for at_least_once. It initialises, begins, produces, sends offsets, commits and aborts; it tracks delivery
// reports; and it classifies every failure as retriable, abortable or fatal (see Class). It never polls a
// consumer and never decides what to do about an error: that policy is the txn package's.
package produce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/internal/rdkafka"
	"github.com/eosproc/eosproc/stream"
)

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
}

// Producer wraps one librdkafka producer. Its methods are called from one goroutine (the loop); only delivery
// reports arrive concurrently.
type Producer struct {
	k              *kafka.Producer
	transactional  bool
	groupID        string
	log            *slog.Logger
	errLog         *rdkafka.ErrorLog
	onError        func(kafka.Error)
	drained        chan struct{}
	maxRecordBytes int
	// stallBound is how long a transactional call may stay inside librdkafka; past it the producer is wedged.
	stallBound time.Duration
	wedged     atomic.Bool

	// pending counts records produced whose delivery report has not been handled yet. Flush waits on it rather
	// than on librdkafka's queue length, which reaches zero before the last report has been looked at.
	pending atomic.Int64

	mu sync.Mutex
	// epoch numbers the current transaction (or at_least_once batch); each record carries it as its Opaque, so a
	// late report for a record of an aborted transaction (purged by the abort) is not blamed on the next one.
	epoch       uint64
	deliveryErr error

	// Reused for every record, by the loop's goroutine only: the client copies key, value, headers and opaque
	// into librdkafka (RD_KAFKA_MSG_F_COPY) before Produce returns and keeps no reference to the message, so a
	// fresh message, header slice, topic string and boxed epoch per record would be garbage made for nothing.
	msg    kafka.Message
	topics map[string]*string // the TopicPartition.Topic pointer per topic
	opaque any                // epoch, boxed once per transaction
}

// New creates the producer and starts draining its delivery reports and logs. Call InitTransactions before
// anything else when the producer is transactional.
func New(cfg Config) (*Producer, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	owned := map[string]string{
		"bootstrap.servers":  cfg.Brokers,
		"enable.idempotence": "true",
		"acks":               "all",
		// Transactions commit every batch interval; a short linger fills produce requests without adding much
		// to the commit latency (commit flushes anyway).
		"linger.ms": "10",
		// Delivery reports are only looked at for errors; copying keys and values back would waste memory.
		"go.delivery.report.fields": "none",
	}
	if cfg.MessageTimeout > 0 {
		owned["message.timeout.ms"] = strconv.FormatInt(cfg.MessageTimeout.Milliseconds(), 10)
	}
	if cfg.TransactionalID != "" {
		owned["transactional.id"] = cfg.TransactionalID
		owned["transaction.timeout.ms"] = strconv.FormatInt(cfg.TransactionTimeout.Milliseconds(), 10)
	}
	cm, err := rdkafka.ConfigMap(owned, cfg.Properties)
	if err != nil {
		return nil, fmt.Errorf("configure producer: %w", err)
	}
	k, err := kafka.NewProducer(cm)
	if err != nil {
		return nil, fmt.Errorf("create producer: %w", err)
	}
	p := &Producer{
		k:              k,
		transactional:  cfg.TransactionalID != "",
		groupID:        cfg.GroupID,
		log:            log,
		errLog:         &rdkafka.ErrorLog{Log: log},
		onError:        cfg.OnError,
		drained:        make(chan struct{}),
		topics:         map[string]*string{},
		stallBound:     max(cfg.TransactionTimeout, attemptTimeout) + stallMargin,
		maxRecordBytes: defaultMaxRecordBytes,
	}
	if v, ok := cfg.Properties["message.max.bytes"]; ok {
		// librdkafka has accepted the value, so it is a number.
		p.maxRecordBytes, _ = strconv.Atoi(v)
	}
	go rdkafka.ForwardLogs(k.Logs(), log.With("component", "producer"), nil)
	go p.drain()
	return p, nil
}

// drain reads delivery reports for the producer's whole life. Nothing else may read Events(), and it must never
// stop early: librdkafka blocks commit and abort (which flush) until every report has been handed over.
func (p *Producer) drain() {
	defer close(p.drained)
	for ev := range p.k.Events() {
		switch e := ev.(type) {
		case *kafka.Message:
			if err := e.TopicPartition.Error; err != nil {
				p.recordFailure(e, err)
			}
			p.pending.Add(-1)
		case kafka.Error:
			if e.IsFatal() {
				p.log.Error("producer fatal error", "error", e)
			} else {
				p.errLog.Warn("producer error", e)
				if p.onError != nil {
					p.onError(e)
				}
			}
		}
	}
}

func (p *Producer) recordFailure(m *kafka.Message, err error) {
	epoch, _ := m.Opaque.(uint64)
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch != p.epoch || p.deliveryErr != nil {
		return
	}
	topic := ""
	if m.TopicPartition.Topic != nil {
		topic = *m.TopicPartition.Topic
	}
	p.deliveryErr = fmt.Errorf("deliver record to %s/%d: %w", topic, m.TopicPartition.Partition, err)
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
	return p.guard(ctx, "init transactions", func() error { return p.k.InitTransactions(attempt) })
}

// attemptTimeout bounds one InitTransactions or SendOffsets call. librdkafka then returns a retriable timeout
// that the caller repeats with the same arguments, checking between attempts whether it is shutting down.
const attemptTimeout = 5 * time.Second

// Begin starts a transaction, or an at_least_once batch, and forgets the previous one's delivery failures.
func (p *Producer) Begin() error {
	p.mu.Lock()
	p.epoch++
	p.deliveryErr = nil
	p.opaque = p.epoch
	p.mu.Unlock()
	if !p.transactional {
		return nil
	}
	return wrap("begin transaction", p.k.BeginTransaction())
}

// Produce enqueues one record for the topic in r.Topic, waiting while the local queue is full.
func (p *Producer) Produce(ctx context.Context, r stream.Record) error {
	return p.produce(ctx, r, kafka.PartitionAny)
}

// ProduceToPartition enqueues one record for partition r.Partition of r.Topic, for state that is co-partitioned
// with the input (a changelog) rather than placed by its key.
func (p *Producer) ProduceToPartition(ctx context.Context, r stream.Record) error {
	return p.produce(ctx, r, r.Partition)
}

func (p *Producer) produce(ctx context.Context, r stream.Record, partition int32) error {
	topic, ok := p.topics[r.Topic]
	if !ok {
		name := r.Topic
		topic = &name
		p.topics[name] = topic
	}
	msg := &p.msg
	headers := msg.Headers[:0]
	for _, h := range r.Headers {
		headers = append(headers, kafka.Header{Key: h.Key, Value: h.Value})
	}
	*msg = kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: topic, Partition: partition},
		Key:            r.Key,
		Value:          r.Value,
		Timestamp:      r.Timestamp,
		Opaque:         p.opaque, // written only by Begin, on this goroutine
		Headers:        headers,
	}
	for {
		p.pending.Add(1)
		err := p.k.Produce(msg, nil)
		if err == nil {
			return nil
		}
		p.pending.Add(-1)
		var ke kafka.Error
		if !errors.As(err, &ke) || ke.Code() != kafka.ErrQueueFull {
			return p.produceError(r.Topic, err)
		}
		// The queue drains as the broker acknowledges; give it a moment instead of spinning.
		p.k.Flush(50)
		if ctx.Err() != nil {
			return &Error{Op: "produce to " + r.Topic, Class: Abortable, Err: context.Cause(ctx)}
		}
	}
}

// produceError classifies a refused Produce call. librdkafka refuses records with a state error once the
// transaction has failed (a delivery failed, the broker aborted it): that is abortable, unless the producer as a
// whole has failed.
func (p *Producer) produceError(topic string, err error) error {
	op := "produce to " + topic
	if fatal := p.k.GetFatalError(); fatal != nil {
		return &Error{Op: op, Class: Fatal, Err: fatal}
	}
	var ke kafka.Error
	if errors.As(err, &ke) && ke.Code() == kafka.ErrState {
		return &Error{Op: op, Class: Abortable, Err: err}
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

// ErrRecordRefused marks a Produce refused because of the record itself (larger than message.max.bytes): the
// same record would be refused again, so retrying the batch as it is cannot help.
var ErrRecordRefused = errors.New("record refused")

// SendOffsets adds the consumer's next offsets to the transaction: they are committed to the group if and only if
// the transaction commits. group must be the consumer's metadata taken after the batch was polled: the
// coordinator compares its generation with the group's and refuses offsets from a member that has since lost
// its partitions (KIP-447), which is what keeps a zombie from committing over its successor.
func (p *Producer) SendOffsets(ctx context.Context, offsets map[stream.TopicPartition]int64, group *kafka.ConsumerGroupMetadata) error {
	parts := make([]kafka.TopicPartition, 0, len(offsets))
	for tp, off := range offsets {
		topic := tp.Topic
		parts = append(parts, kafka.TopicPartition{Topic: &topic, Partition: tp.Partition, Offset: kafka.Offset(off)})
	}
	op := fmt.Sprintf("send offsets for group %q (%d partitions)", p.groupID, len(parts))
	// Without a deadline librdkafka waits the remaining transaction time, longer still when the coordinator's
	// connection went silent (a network cut leaves it half-open until socket.timeout.ms): seen past a minute,
	// which outlasted the shutdown bound. Short attempts keep the caller in charge.
	attempt, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	return p.guard(ctx, op, func() error { return p.k.SendOffsetsToTransaction(attempt, parts, group) })
}

// Commit commits the transaction. A delivery that already failed makes it abortable without asking the broker.
// librdkafka is given no deadline, so it waits as long as the transaction may still live: giving up earlier would
// leave the outcome unknown, and the retry would have to ask again anyway.
func (p *Producer) Commit() error {
	if err := p.DeliveryError(); err != nil {
		return &Error{Op: "commit transaction", Class: Abortable, Err: err}
	}
	return p.guard(context.Background(), "commit transaction", func() error { return p.k.CommitTransaction(context.Background()) })
}

// Abort aborts the transaction; librdkafka purges the records not yet delivered (their reports arrive with a
// purge error and are ignored) and tells the coordinator to write abort markers, so read_committed readers skip
// everything the transaction wrote.
func (p *Producer) Abort() error {
	if !p.transactional {
		return nil
	}
	return p.guard(context.Background(), "abort transaction", func() error { return p.k.AbortTransaction(context.Background()) })
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
	// A call given its own deadline returns within it; the grace keeps a call that is just finishing from being
	// taken for a stuck one.
	grace := time.NewTimer(attemptTimeout)
	defer grace.Stop()
	select {
	case err := <-done:
		return wrap(op, err)
	case <-grace.C:
		return p.wedge(op, fmt.Sprintf("%s after its caller gave up (%v)", attemptTimeout, context.Cause(ctx)))
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
	for p.pending.Load() > 0 {
		if ctx.Err() != nil {
			return &Error{Op: "flush", Class: Abortable, Err: context.Cause(ctx)}
		}
		p.k.Flush(100)
		if p.pending.Load() > 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if err := p.DeliveryError(); err != nil {
		return &Error{Op: "flush", Class: Abortable, Err: err}
	}
	return nil
}

// DeliveryError returns the current transaction's first failed delivery, if any.
func (p *Producer) DeliveryError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.deliveryErr
}

// Close closes the producer. An open transaction is left to the broker, which aborts it at its timeout or when
// the next incarnation calls InitTransactions; callers abort first when they can.
func (p *Producer) Close() {
	if p.wedged.Load() {
		// librdkafka would wait for the call still running inside it, which is why the process is exiting.
		p.log.Warn("producer left open: a call into librdkafka never returned")
		return
	}
	p.k.Close()
	<-p.drained
}
