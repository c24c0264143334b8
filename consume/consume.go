// Package consume owns the input side: consumer group membership (cooperative-sticky, read_committed; static only
// when an instance id is given), micro-batch assembly under per-partition budgets with pause and resume,
// rewinding to the committed offsets after an aborted transaction, and what the rest of the processor needs to
// know about the assignment (which partitions, their lag, the group metadata that fences zombies). It knows
// nothing of transactions: offsets are committed by whoever uses it, and a revocation waits for whatever barrier
// that user sets.
package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/internal/librdkafka"
	"github.com/eosproc/eosproc/internal/rdkafka"
	"github.com/eosproc/eosproc/stream"
)

// DefaultBatchRecords is the size at which a batch closes before its interval ends, unless configured otherwise.
// Every transaction costs a few round trips to the coordinators whatever its size (tens of milliseconds on a busy
// broker), so a batch must not be too small; but under a steady load every record waits for its batch to fill, so
// the size is latency. At 170,000 records/s of 100 bytes (100 ms batches, 2 cores shared with the broker, the
// generator and the reader; 4 alternating runs each), closing at 10,000 records gave a p50 of 57-67 ms and a p99
// of 114-144 ms against 92-98 and 166-193 at 20,000, at the same CPU per record. A backlog is not slowed: its
// batches grow (see batchSize). Nearer capacity the extra transactions cost: at 224,000 records/s the p99 was
// 157-432 ms against 175-208 at 20,000 (docs/benchmarks.md, "Batch size and latency").
const DefaultBatchRecords = 10000

// DefaultMaxBatchRecords is the most records in one batch unless configured otherwise: how far batches grow while
// a backlog waits.
const DefaultMaxBatchRecords = 50000

// DefaultBatchInterval is how long a batch collects records unless configured otherwise (Kafka Streams' default
// commit.interval.ms under exactly-once is 100 ms, Spark's batch intervals are seconds).
const DefaultBatchInterval = 500 * time.Millisecond

// Config is what the consumer needs. Brokers, GroupID and Topics are required.
type Config struct {
	Brokers string
	GroupID string
	// InstanceID, when set, is the static group.instance.id: a member that restarts within the session timeout
	// gets its partitions back without a rebalance of the whole group.
	InstanceID string
	Topics     []string
	// AutoOffsetReset is where a partition with no committed offset starts, and where one whose committed
	// offset fell off retention restarts: "earliest" (default) or "latest".
	AutoOffsetReset string
	// BatchInterval is how long Assemble collects one batch at most. Zero means DefaultBatchInterval.
	BatchInterval time.Duration
	// BatchRecords is the size at which a batch closes before its interval ends while the input keeps up. Zero
	// means DefaultBatchRecords; it is at most MaxBatchRecords.
	BatchRecords int
	// MaxBatchRecords is the most records a batch takes. While a backlog waits, each batch may take twice as
	// many as the one before, from BatchRecords up to MaxBatchRecords (and within maxGrownBatchBytes); librdkafka's
	// prefetch is sized from it. Zero means DefaultMaxBatchRecords.
	MaxBatchRecords int
	// MaxPollInterval must exceed the longest gap between two Assemble calls (one batch's transform and
	// commit); past it librdkafka leaves the group and the batch's offsets are refused.
	MaxPollInterval time.Duration
	// Properties are passed to librdkafka as they are; the keys the guarantees depend on are refused.
	Properties map[string]string
	Logger     *slog.Logger
	// OnError, if set, is called (inside Assemble) with each non-fatal error the client reports: broker down,
	// authentication or TLS handshake refused. The processor watches it for failures an operator must fix.
	OnError func(kafka.Error)
	// OnFatal, if set, is called (from the log goroutine) when the client fails for good, e.g. a static member
	// fenced. The loop may be inside a transaction then, not polling, and would only see it at its next poll.
	OnFatal func(error)
	// OnStats, if set, receives librdkafka's statistics (JSON) inside Assemble every statistics.interval.ms:
	// rdkafka.StatsInterval unless Properties set it (0 turns them off).
	OnStats func(json []byte)
}

// batchRecords is the size a batch closes at while the input keeps up: BatchRecords, at most MaxBatchRecords.
// Without a size of its own a batch closes only when full.
func (cfg Config) batchRecords() int {
	if cfg.BatchRecords <= 0 {
		return cfg.MaxBatchRecords
	}
	return min(cfg.BatchRecords, cfg.MaxBatchRecords)
}

// client is the librdkafka consumer as Consumer uses it: its rebalance callback calls Consumer.rebalance from
// inside Consume. Tests substitute a model of librdkafka for the timing windows real Kafka cannot hit on demand.
type client interface {
	Subscribe(topics []string) error
	Consume(timeout time.Duration, max int, dst []stream.Record) ([]stream.Record, []librdkafka.PartitionError, error)
	IncrementalAssign(parts []kafka.TopicPartition) error
	IncrementalUnassign(parts []kafka.TopicPartition) error
	AssignmentLost() bool
	Pause(parts []kafka.TopicPartition) error
	Resume(parts []kafka.TopicPartition) error
	Committed(parts []kafka.TopicPartition, timeout time.Duration) ([]kafka.TopicPartition, error)
	Position(parts []kafka.TopicPartition) ([]kafka.TopicPartition, error)
	Seek(parts []kafka.TopicPartition, timeout time.Duration) ([]kafka.TopicPartition, error)
	Watermarks(tp stream.TopicPartition) (low, high int64, err error)
	QueryWatermarks(tp stream.TopicPartition, timeout time.Duration) (low, high int64, err error)
	GroupMetadata() (*librdkafka.GroupMetadata, error)
	Commit(offsets []kafka.TopicPartition) ([]kafka.TopicPartition, error)
	FatalError() error
	Close() error
}

// Consumer is one group member. Assemble, Rewind, Lags, TakeRevoked, SetRevokeBarrier, SetBatchHold,
// SetBatchSink and Close must be called from one goroutine (the loop); Assigned, GroupMetadata, Joined,
// CommitOffsets and OffsetResets may be called from any (the loop's transactions run beside its next assembly,
// /readyz beside both).
type Consumer struct {
	k         client
	log       *slog.Logger
	errLog    *rdkafka.ErrorLog
	onError   func(kafka.Error)
	onFatal   func(error)
	resetMode string
	// The batch limits, from Config: how long one Assemble collects at most, the size at which it closes while
	// the input keeps up, and how far that size grows while a backlog waits.
	interval     time.Duration
	batchRecords int
	maxRecords   int
	// closeAt is the size the next batch closes at; waiting is the total lag Lags last saw, what decides whether
	// closeAt grows.
	closeAt   int
	waiting   int64
	lastBytes int // keys and values of the last batch that closed full

	// Rebalance callbacks run inside Poll, on the loop's goroutine, so the fields below need no lock.
	carry     map[stream.TopicPartition][]stream.Record // polled beyond budget, first in line next batch
	pending   []stream.Record                           // the batch being assembled
	paused    map[stream.TopicPartition]bool
	revoked   []stream.TopicPartition         // since the last TakeRevoked
	firstSeen map[stream.TopicPartition]int64 // first offset delivered since assignment: where a rewind without committed offset goes
	cbErr     error                           // an assignment the callback could not apply
	polled    []stream.Record                 // reused buffer of one consume call
	// revokedInCall holds the partitions revoked during the current consume call. The call may have gathered
	// some of their records before the revocation, and the partition may even be assigned back before the call
	// ends; such a record is from before the revocation, and the partition's position was reset since.
	revokedInCall map[stream.TopicPartition]bool
	// reassigned holds the partitions revoked and then assigned again within the current consume call, with the
	// new assignment's start offset (negative: librdkafka's choice); droppedFrom the lowest offset of their
	// records the call returned. take drops all of them (it cannot tell the old assignment's records from the new
	// one's), but librdkafka's fetch position has moved past them, so they are sought back to: otherwise the new
	// assignment would go on after records nobody processed.
	reassigned  map[stream.TopicPartition]int64
	droppedFrom map[stream.TopicPartition]int64
	// rewound holds the partitions whose first record since the last Rewind has not arrived yet: where that
	// record is goes to the debug log, next to the position the rewind sought.
	rewound map[stream.TopicPartition]bool
	// gained says partitions were assigned during the current Assemble: their budgets were not asked for.
	gained    bool
	lastBatch int   // records in the last batch Assemble returned
	fatal     error // a fatal error event, served inside Consume
	// beforeRevoke is what a revocation or loss waits for before the partitions go: the transaction in flight.
	beforeRevoke func(revoked []stream.TopicPartition)
	// hold, while it reports true, keeps a batch whose interval has passed, or that is full, collecting records
	// (SetBatchHold).
	hold func() bool
	// sink is shown the batch so far after every poll that changed it (SetBatchSink); shown is how many records
	// it was last shown, -1 once a revocation dropped some.
	sink  func(batch []stream.Record) error
	shown int

	mu       sync.Mutex
	assigned map[stream.TopicPartition]bool
	// pausedHigh holds the high watermarks of paused partitions as their leaders last told them (guarded by
	// mu): librdkafka's cached ones stop moving while a partition is not fetched, and a lag computed from them
	// would stop growing too. Refreshed in the background (queries, lastQuery) at most once a second.
	pausedHigh map[stream.TopicPartition]int64
	querying   bool // guarded by mu
	lastQuery  time.Time
	queries    sync.WaitGroup

	resets atomic.Uint64
}

// OwnedProperties are the librdkafka properties the consumer sets itself, each with why; Config.Properties must
// not set them (or their aliases), and the processor refuses them in its configuration. A test keeps this list
// and what New sets the same.
var OwnedProperties = map[string]string{
	"bootstrap.servers":                  "the brokers are configured on their own",
	"metadata.broker.list":               "the brokers are configured on their own",
	"group.id":                           "the group is configured on its own",
	"group.instance.id":                  "static membership is configured on its own (the instance id)",
	"partition.assignment.strategy":      "the processor relies on cooperative-sticky rebalancing",
	"isolation.level":                    "exactly-once needs read_committed",
	"enable.auto.commit":                 "offsets are committed with each transaction",
	"enable.auto.offset.store":           "offsets are committed with each transaction",
	"auto.offset.reset":                  "the reset policy is configured on its own",
	"topic.metadata.refresh.interval.ms": "partitions added to an input topic must be noticed within 5 s",
	"max.poll.interval.ms":               "derived from the transaction timeout and batch interval",
}

// ownedProperties are the values of the OwnedProperties that New sets for cfg.
func ownedProperties(cfg Config, reset string, maxPoll time.Duration) map[string]string {
	owned := map[string]string{
		"bootstrap.servers": cfg.Brokers,
		"group.id":          cfg.GroupID,
		// Cooperative rebalancing revokes only the partitions that move, so the other partitions' batches go on.
		"partition.assignment.strategy": "cooperative-sticky",
		// Exactly-once downstream of a transactional producer: never read records of open or aborted transactions.
		"isolation.level": "read_committed",
		// Offsets are committed only through the producer's transaction (or, at_least_once, after a flush);
		// librdkafka committing or storing positions by itself would commit records that were never produced.
		"enable.auto.commit":       "false",
		"enable.auto.offset.store": "false",
		"auto.offset.reset":        reset,
		// Partitions added to an input topic are noticed within this interval; they have no committed offset,
		// so with "earliest" they start at their first record and nothing written before we noticed is lost.
		"topic.metadata.refresh.interval.ms": "5000",
		"max.poll.interval.ms":               strconv.FormatInt(maxPoll.Milliseconds(), 10),
	}
	if cfg.InstanceID != "" {
		owned["group.instance.id"] = cfg.InstanceID
	}
	return owned
}

// New creates the consumer and subscribes it to the topics; partitions arrive through the rebalance callback
// during Assemble.
func New(cfg Config) (*Consumer, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	reset := cfg.AutoOffsetReset
	if reset == "" {
		reset = "earliest"
	}
	if cfg.MaxBatchRecords <= 0 {
		cfg.MaxBatchRecords = DefaultMaxBatchRecords
	}
	if cfg.BatchRecords <= 0 {
		cfg.BatchRecords = DefaultBatchRecords
	}
	if cfg.BatchInterval <= 0 {
		cfg.BatchInterval = DefaultBatchInterval
	}
	maxPoll := cfg.MaxPollInterval
	if maxPoll <= 0 {
		maxPoll = 5 * time.Minute
	}
	all, err := clientProperties(cfg, reset, maxPoll)
	if err != nil {
		return nil, err
	}
	c := newConsumer(cfg, log, reset)
	clientLog := log.With("component", "consumer")
	k, err := librdkafka.NewConsumer(all, librdkafka.Hooks{
		Rebalance: c.rebalance,
		Error:     c.clientError,
		Stats:     cfg.OnStats,
		Log: func(e kafka.LogEvent) {
			c.watchLogs(e)
			rdkafka.Log(clientLog, e)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer for group %q: %w", cfg.GroupID, err)
	}
	c.k = k
	if err := c.k.Subscribe(cfg.Topics); err != nil {
		_ = c.k.Close()
		return nil, err
	}
	return c, nil
}

// clientProperties is every librdkafka property of the consumer: what it owns, its defaults, and the user's
// properties over the defaults.
func clientProperties(cfg Config, reset string, maxPoll time.Duration) (map[string]string, error) {
	props := map[string]string{
		// Prefetch, sized from the largest batch (a backlog's): librdkafka fetches a partition again while it holds
		// fewer than queued.min.messages of its records (librdkafka's default, 100,000 per partition, is many
		// batches of records and their bookkeeping in memory), and at most queued.max.messages.kbytes of records in
		// all. A partition above either waits fetch.queue.backoff.ms before its next fetch: librdkafka's default of
		// 1 s left batches waiting for records once the prefetch was sized for about one batch. Records carried
		// over between batches add at most maxCarry per partition.
		"queued.min.messages":        strconv.Itoa(prefetchRecords(cfg.MaxBatchRecords)),
		"queued.max.messages.kbytes": "32768",
		"fetch.queue.backoff.ms":     "10",
		"fetch.max.bytes":            "16777216",
		// librdkafka keeps a fetch response's buffer until the last record read from it is destroyed, and its
		// buffers of up to a partition's limit per partition stayed in malloc's heap after they were freed:
		// draining 100-byte records over 6 partitions, 256 KiB held the C heap at 19 MB where 1 MiB
		// (librdkafka's and Kafka's default) held 43 MB, and drained 100-byte and 1 KB records no slower.
		"max.partition.fetch.bytes": "262144",
		// A resumed partition waits for the fetch in flight to come back; the broker holds an empty fetch this
		// long, so it bounds how late a paused partition's records return (librdkafka's default is 500 ms).
		"fetch.wait.max.ms": "100",
		// A member that died for good frees its partitions after this; a static member restarting sooner keeps
		// them without a rebalance.
		"session.timeout.ms":      "10000",
		rdkafka.SparseConnections: "false",
	}
	if cfg.OnStats != nil {
		props["statistics.interval.ms"] = strconv.FormatInt(rdkafka.StatsInterval.Milliseconds(), 10)
	}
	for k, v := range cfg.Properties {
		props[k] = v
	}
	all, err := rdkafka.Properties(ownedProperties(cfg, reset, maxPoll), OwnedProperties, props)
	if err != nil {
		return nil, fmt.Errorf("configure consumer: %w", err)
	}
	return all, nil
}

// newConsumer is a Consumer without its client, cfg's defaults applied.
func newConsumer(cfg Config, log *slog.Logger, reset string) *Consumer {
	return &Consumer{
		log:          log,
		errLog:       &rdkafka.ErrorLog{Log: log},
		onError:      cfg.OnError,
		onFatal:      cfg.OnFatal,
		resetMode:    reset,
		interval:     cfg.BatchInterval,
		maxRecords:   cfg.MaxBatchRecords,
		batchRecords: cfg.batchRecords(),
		carry:        map[stream.TopicPartition][]stream.Record{},
		paused:       map[stream.TopicPartition]bool{},
		firstSeen:    map[stream.TopicPartition]int64{},
		assigned:     map[stream.TopicPartition]bool{},

		revokedInCall: map[stream.TopicPartition]bool{},
		reassigned:    map[stream.TopicPartition]int64{},
		droppedFrom:   map[stream.TopicPartition]int64{},
		rewound:       map[stream.TopicPartition]bool{},
	}
}

// clientError handles librdkafka's error events, which it serves inside Consume.
func (c *Consumer) clientError(e kafka.Error) {
	if e.IsFatal() {
		if c.fatal == nil {
			c.fatal = fmt.Errorf("consume (group member fenced or broken; see error): %w", c.fatalCause(e))
		}
		return
	}
	// Broker down, topic not yet created, coordinator moving: librdkafka recovers by itself.
	c.errLog.Warn("consumer error", e)
	if c.onError != nil {
		c.onError(e)
	}
}

// fatalCause is the client's fatal error itself: the event only says that there is one.
func (c *Consumer) fatalCause(e kafka.Error) error {
	if err := c.k.FatalError(); err != nil {
		return err
	}
	return e
}

// watchLogs reads librdkafka's log lines for what it reports nowhere else in time: offset resets, and a fatal
// error while the loop is not polling.
func (c *Consumer) watchLogs(e kafka.LogEvent) {
	c.watchResets(e)
	if e.Tag == "FATAL" && c.onFatal != nil {
		c.onFatal(errors.New(e.Message))
	}
}

// watchResets counts resets of out-of-range offsets. librdkafka reports them only as a warning log line (a reset
// for lack of a committed offset is a debug line), so the log is the signal. A reset means records were deleted
// by retention before we read them: data lost upstream, which nobody downstream can notice otherwise.
func (c *Consumer) watchResets(e kafka.LogEvent) {
	if e.Tag == "OFFSET" && e.Level <= 4 && strings.Contains(e.Message, "offset reset") {
		c.resets.Add(1)
		c.log.Error("input offset out of range: records deleted before they were processed; reset per auto.offset.reset",
			"policy", c.resetMode, "detail", e.Message)
	}
}

// rebalance applies assignment changes. With the cooperative protocol the events carry only the partitions that
// move, and the callback must apply them itself with IncrementalAssign/IncrementalUnassign.
//
// A revocation or loss first waits for the barrier (SetRevokeBarrier): the transaction in flight, which may hold
// records of these partitions, must have committed or aborted before their new owner reads the committed
// offsets. Then records of the revoked partitions that were polled but not yet produced (in the batch being
// assembled, or carried over) are dropped: the partition's new owner reads them again from the committed offset,
// and producing them here too would duplicate them. Records a consume call had already gathered before the
// callback ran are dropped by Assemble, which checks each record's partition after the call.
func (c *Consumer) rebalance(assign bool, parts []kafka.TopicPartition) {
	if assign {
		parts = c.startAtCommitted(parts)
		c.log.Info("partitions assigned", "partitions", names(parts), "offsets", offsetsOf(parts))
		if err := c.k.IncrementalAssign(parts); err != nil {
			c.cbErr = fmt.Errorf("assign %d partitions: %w", len(parts), err)
			return
		}
		c.mu.Lock()
		for _, p := range parts {
			tp := tpOf(p)
			c.assigned[tp] = true
			if c.revokedInCall[tp] {
				c.reassigned[tp] = int64(p.Offset)
			}
		}
		c.mu.Unlock()
		c.gained = len(parts) > 0
		return
	}
	if c.beforeRevoke != nil {
		revoked := make([]stream.TopicPartition, len(parts))
		for i, p := range parts {
			revoked[i] = tpOf(p)
		}
		c.beforeRevoke(revoked)
	}
	if c.k.AssignmentLost() {
		c.log.Warn("partitions lost (session timed out or fenced); dropping their unproduced records",
			"partitions", names(parts))
	} else {
		c.log.Info("partitions revoked; dropping their unproduced records", "partitions", names(parts))
	}
	gone := map[stream.TopicPartition]bool{}
	var resume []kafka.TopicPartition
	for _, p := range parts {
		tp := tpOf(p)
		gone[tp] = true
		c.revokedInCall[tp] = true
		delete(c.carry, tp)
		delete(c.firstSeen, tp)
		delete(c.rewound, tp)
		if c.paused[tp] {
			// librdkafka keeps an application pause across unassign and a later assign of the same partition.
			resume = append(resume, p)
			delete(c.paused, tp)
		}
	}
	c.pending = dropPartitions(c.pending, gone)
	c.shown = -1
	if len(resume) > 0 {
		if err := c.k.Resume(resume); err != nil {
			c.log.Warn("resume revoked partitions", "error", err)
		}
	}
	c.mu.Lock()
	for tp := range gone {
		delete(c.assigned, tp)
		c.revoked = append(c.revoked, tp)
	}
	c.mu.Unlock()
	if err := c.k.IncrementalUnassign(parts); err != nil {
		c.cbErr = fmt.Errorf("unassign %d partitions: %w", len(parts), err)
	}
}

// SetBatchHold sets what keeps a batch collecting after its interval has passed or it is full, while it reports
// true: the transaction the batch must wait for is still in flight, so ending the batch would only leave the
// records that arrive meanwhile waiting in librdkafka's queue (nil: the interval or the batch size ends every
// batch). A full batch held takes up to MaxBatchRecords, within maxHeldBatchBytes (heldLimit).
func (c *Consumer) SetBatchHold(hold func() bool) { c.hold = hold }

// holdPoll is how often a held batch checks whether it may end.
const holdPoll = 5 * time.Millisecond

// SetRevokeBarrier sets what a revocation or loss of partitions waits for, inside Assemble, before their records
// are dropped and the partitions given up (nil: nothing). It is called with the partitions going.
func (c *Consumer) SetRevokeBarrier(wait func(revoked []stream.TopicPartition)) {
	c.beforeRevoke = wait
}

// SetBatchSink sets what Assemble shows the batch so far, after every poll that changed it (nil:
// nothing), so that the loop can write records while the batch is still being assembled. The batch grows by
// appending; a revocation only drops records of the revoked partitions, so a prefix without them stays as it
// was. An error from sink ends Assemble, which returns it.
func (c *Consumer) SetBatchSink(sink func(batch []stream.Record) error) { c.sink = sink }

// feed shows the sink the batch so far, if it changed since the sink last saw it.
func (c *Consumer) feed() error {
	if c.sink == nil || len(c.pending) == c.shown || len(c.pending) == 0 {
		return nil
	}
	c.shown = len(c.pending)
	return c.sink(c.pending)
}

// reseekReassigned seeks the partitions revoked and assigned again in the last consume call, whose records that
// call returned were dropped, back to where their new assignment starts (its committed offset, or the lowest
// dropped offset when it has none), so that the dropped records are read again.
func (c *Consumer) reseekReassigned() error {
	var seeks []kafka.TopicPartition
	for tp, start := range c.reassigned {
		from, dropped := c.droppedFrom[tp]
		if !dropped {
			continue
		}
		if start < 0 {
			start = from
		}
		seeks = append(seeks, ktp(tp, kafka.Offset(start)))
	}
	if len(seeks) == 0 {
		return nil
	}
	res, err := c.k.Seek(seeks, 30*time.Second)
	if err != nil {
		return fmt.Errorf("seek %d partitions assigned again back to their start: %w", len(seeks), err)
	}
	for _, p := range res {
		if p.Error != nil {
			return fmt.Errorf("seek %s back to offset %d: %w", tpOf(p), p.Offset, p.Error)
		}
	}
	c.log.Info("partitions assigned again within one consume call: their records of that call dropped and read again",
		"positions", offsetsOf(res), "partitions", names(res))
	return nil
}

func dropPartitions(recs []stream.Record, gone map[stream.TopicPartition]bool) []stream.Record {
	kept := recs[:0]
	for _, r := range recs {
		if !gone[r.TopicPartition()] {
			kept = append(kept, r)
		}
	}
	return kept
}

// Batching returns the batch limits the consumer was configured with: how long Assemble collects a batch at most,
// and how many records it takes at most (while a backlog waits).
func (c *Consumer) Batching() (interval time.Duration, maxRecords int) {
	return c.interval, c.maxRecords
}

// batchSize is the size the next batch closes at. While the input keeps up a batch closes at batchRecords, so that
// a steady load does not wait out the whole interval in every batch. While a backlog waits (the last batch closed
// full, and Lags found at least another such batch behind it) each batch may take twice as many as the last, up
// to maxRecords: a transaction costs the same round trips to the coordinators whatever its size, and a backlog's
// records wait for the backlog anyway. Draining 2,000,000 x 100 B in 100 ms batches, closing at 20,000 records
// committed 446,000-581,000 records/s, growing to 50,000 610,000-641,000. A batch does not grow past
// maxGrownBatchBytes of keys and values, which bounds memory with large records. A batch the interval or the
// budgets cut short keeps the size (at 100 ms a drain fills about 45,000, and falling back to batchRecords each
// time would give most of the gain away), and a batch never closes later than at the records that wait; the size
// falls back at once when the backlog left is less than batchRecords.
func (c *Consumer) batchSize() int {
	waiting := c.waiting
	c.waiting = 0 // decided on Lags' latest figure only
	if waiting < int64(c.batchRecords) {
		c.closeAt = c.batchRecords
		return c.closeAt
	}
	size := max(c.closeAt, c.batchRecords)
	if c.closeAt > 0 && c.lastBatch >= c.closeAt && waiting >= int64(c.closeAt) && 2*c.lastBytes <= maxGrownBatchBytes {
		size = min(2*c.closeAt, c.maxRecords)
	}
	// A batch larger than what waits would take the backlog's last records and then wait out the interval for
	// more: the end of a drain in 1 s batches took a second longer.
	c.closeAt = int(min(int64(size), waiting))
	return c.closeAt
}

// heldLimit is how many records a batch full at size may hold while it waits for the transaction in flight: up to
// maxRecords, within maxHeldBatchBytes of keys and values at the size of its records so far, and at least size.
func (c *Consumer) heldLimit(size int) int {
	limit := c.maxRecords
	if bytes := payloadBytes(c.pending); bytes > 0 {
		limit = min(limit, int(int64(len(c.pending))*maxHeldBatchBytes/int64(bytes)))
	}
	return max(limit, size)
}

// maxHeldBatchBytes bounds the keys and values a full batch grows to while held. Two batches are in memory then,
// the one in flight and the one held: up to maxGrownBatchBytes, 1 KB drains peaked at 199-232 MB RSS against
// 141-162, no faster. Up to twice the batch size instead, the p99 of latency runs (100-byte records in batches of
// 10,000 at 170,000 records/s) was higher, 119-180 ms against 114-144: a batch held past a slow commit needs to
// take more than twice its size.
const maxHeldBatchBytes = maxGrownBatchBytes / 2

// maxGrownBatchBytes bounds the keys and values of a batch grown beyond batchRecords: batches of 100-byte
// records grow to the default maximum (5 MB), while batches of 1 KB records stop at 20,000 (20 MB).
const maxGrownBatchBytes = 32 << 20

// payloadBytes is the size of the batch's keys and values.
func payloadBytes(batch []stream.Record) int {
	n := 0
	for i := range batch {
		n += len(batch[i].Key) + len(batch[i].Value)
	}
	return n
}

// Assemble polls one micro-batch: until the batch interval has passed, or every assigned partition has used its
// budget (records allowed this batch; a partition missing from budgets has none), or the batch is full (see
// batchSize), or partitions were assigned during it (their budgets come with the next batch); past the interval or
// full, it goes on while the hold (SetBatchHold) reports true. Records carried over from the
// previous batch come first. A partition is paused when its budget is used, and a record polled beyond its
// budget is carried to the next batch, never dropped. When ctx is done Assemble returns what it has gathered so
// far. An error is fatal for the consumer.
func (c *Consumer) Assemble(ctx context.Context, budgets map[stream.TopicPartition]int64) ([]stream.Record, error) {
	maxRecords := c.batchSize()
	deadline := time.Now().Add(c.interval)
	used := map[stream.TopicPartition]int64{}
	// Sized like the last batch: a backlog fills every batch, and growing the slice by appending would leave
	// about as much garbage again per batch.
	c.pending = make([]stream.Record, 0, min(max(c.lastBatch, 1024), maxRecords))
	c.gained = false

	for tp, recs := range c.carry {
		n := min(int64(len(recs)), budgets[tp]-used[tp], int64(maxRecords-len(c.pending)))
		if n <= 0 {
			continue
		}
		c.pending = append(c.pending, recs[:n]...)
		used[tp] += n
		if rest := recs[n:]; len(rest) > 0 {
			c.carry[tp] = rest
		} else {
			delete(c.carry, tp)
		}
	}
	c.shown = 0
	if err := c.feed(); err != nil {
		c.pending = nil
		return nil, err
	}
	var resume []kafka.TopicPartition
	for tp := range c.paused {
		if len(c.carry[tp]) == 0 && used[tp] < budgets[tp] {
			resume = append(resume, ktp(tp, kafka.OffsetInvalid))
			delete(c.paused, tp)
		}
	}
	if len(resume) > 0 {
		if err := c.k.Resume(resume); err != nil {
			return nil, fmt.Errorf("resume %d partitions: %w", len(resume), err)
		}
	}

	// A partition assigned during assembly has no budget in this batch (its budget is asked for with the
	// next), so its records could only be carried while the batch waits out the interval: at start-up and
	// after every rebalance that cost a whole interval. The batch ends at once instead.
	limit := maxRecords
	for ctx.Err() == nil && !c.gained {
		if len(c.pending) >= limit && limit > maxRecords {
			break // full even as held
		}
		full := len(c.pending) >= maxRecords
		wait := time.Until(deadline)
		if full || wait < time.Millisecond {
			if c.hold == nil || !c.hold() {
				break
			}
			// The batch is due (its interval passed, or it is full), but it could not go anywhere yet: it takes
			// what arrives meanwhile, checking again shortly. A full one takes up to heldLimit, so that a
			// slow transaction makes the next batch larger instead of leaving what arrived during it to the batch
			// after: with 10,000-record batches, coordinators slowed to 80 ms a transaction for half a second
			// held the loop below the arrival rate, and the latency behind them rose for seconds.
			if full && limit == maxRecords {
				limit = c.heldLimit(maxRecords)
			}
			wait = holdPoll
		}
		left := c.budgetLeft(budgets, used, limit-len(c.pending))
		if len(c.pending) > 0 && left == 0 {
			break
		}
		// One call takes what librdkafka has fetched, up to what the budgets still allow in all: the records it
		// returns come in whatever order librdkafka fetched them, and a partition's records beyond its budget are
		// carried over by take. Taking more than the budgets allow would only fill the carry (and pause partitions
		// whose budget next batch then waits for a fetch).
		var errs []librdkafka.PartitionError
		var err error
		clear(c.revokedInCall)
		clear(c.reassigned)
		clear(c.droppedFrom)
		c.polled, errs, err = c.k.Consume(min(wait, 100*time.Millisecond), max(left, 1), c.polled[:0])
		if err != nil {
			return nil, err
		}
		if c.cbErr != nil {
			return nil, c.cbErr
		}
		if c.fatal != nil {
			return nil, c.fatal
		}
		for _, pe := range errs {
			c.log.Warn("partition error", "partition", pe.Partition.String(), "offset", pe.Offset, "error", pe.Err)
		}
		if err := c.take(c.polled, budgets, used, limit); err != nil {
			return nil, err
		}
		clear(c.polled) // the records live on in pending or carry; the buffer must not keep them alive
		if err := c.reseekReassigned(); err != nil {
			return nil, err
		}
		if err := c.feed(); err != nil {
			c.pending = nil
			return nil, err
		}
	}
	batch := c.pending
	c.pending = nil
	c.lastBatch = len(batch)
	if len(batch) >= maxRecords && maxRecords < c.maxRecords { // only a full batch may grow
		c.lastBytes = payloadBytes(batch)
	}
	return batch, nil
}

// budgetLeft is how many more records the assigned partitions' budgets allow this batch, at most limit.
func (c *Consumer) budgetLeft(budgets, used map[stream.TopicPartition]int64, limit int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	left := 0
	for tp := range c.assigned {
		if b := budgets[tp] - used[tp]; b > 0 {
			left += int(min(b, int64(limit)))
			if left >= limit {
				return limit
			}
		}
	}
	return left
}

func (c *Consumer) take(recs []stream.Record, budgets, used map[stream.TopicPartition]int64, maxRecords int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Consecutive records are mostly of one partition: its state is looked up once per run of them, and what the
	// run took is written back at its end, instead of map operations per record.
	var (
		tp      stream.TopicPartition
		owned   bool
		left    int64 // what the partition's budget still allows
		took    int64 // records of the run taken into the batch
		carried bool  // the partition has records carried over: later ones must queue behind them
	)
	endRun := func() {
		if took > 0 {
			used[tp] += took
		}
	}
	for i := range recs {
		r := &recs[i]
		if i == 0 || r.Topic != tp.Topic || r.Partition != tp.Partition {
			endRun()
			tp = r.TopicPartition()
			took = 0
			owned = c.assigned[tp] && !c.revokedInCall[tp]
			if owned {
				left, carried = budgets[tp]-used[tp], len(c.carry[tp]) > 0
				if _, ok := c.firstSeen[tp]; !ok {
					c.firstSeen[tp] = r.Offset
					c.log.Debug("first record since the partition was assigned", "partition", tp.String(), "offset", r.Offset)
				}
				if c.rewound[tp] {
					delete(c.rewound, tp)
					c.log.Debug("first record since the rewind", "partition", tp.String(), "offset", r.Offset)
				}
			}
		}
		if !owned {
			// Fetched before its partition was revoked; its next owner reads it again from the committed offset.
			// If that is this member, assigned again in this very call, the record may as well be the new
			// assignment's: reseekReassigned goes back for it.
			if _, again := c.reassigned[tp]; again {
				if from, ok := c.droppedFrom[tp]; !ok || r.Offset < from {
					c.droppedFrom[tp] = r.Offset
				}
			}
			continue
		}
		if took < left && len(c.pending) < maxRecords && !carried {
			c.pending = append(c.pending, *r)
			took++
			continue
		}
		// Over budget: carried to the next batch. Pausing would stop the fetching, but it also throws away what
		// librdkafka prefetched for the partition and delays its next fetch after Resume by up to a fetch
		// long-poll, which costs a backlogged partition a whole batch interval. So a partition is paused only once
		// it is a maxCarry ahead of the others. When every partition used its budget, assembly simply stops
		// polling and the prefetched records wait in librdkafka's bounded queue.
		carried = true
		c.carry[tp] = append(c.carry[tp], *r)
		if len(c.carry[tp]) >= maxCarry {
			if err := c.pause(tp); err != nil {
				return err
			}
		}
	}
	endRun()
	return nil
}

// prefetchRecords is how many records librdkafka keeps fetched ahead per partition for batches of at most maxBatch
// records: a quarter of a batch, which kept a 6-partition drain of 100-byte records as fast as a whole batch did,
// but at most 5,000. Beyond that the prefetch bought nothing and cost memory per partition: draining 2,000,000 x
// 100 B in batches of 50,000, 12,500 per partition peaked at 147-158 MB RSS and 5,000 at 85-103 MB, as fast. It
// follows the largest batch, not the size batches close at under a steady load: sized from 10,000, 2,500 per
// partition drained 1 KB records 15% slower (median of 4 alternating drains, 142,700 against 167,000 records/s).
func prefetchRecords(maxBatch int) int { return min(max(1000, maxBatch/4), 5000) }

// maxCarry bounds the records carried over per partition: about 1 MiB of 1 KB records.
const maxCarry = 1000

// pause stops fetching a partition that has used its budget. librdkafka drops what it had prefetched for it and
// resumes from the last record we polled, so nothing is lost, and memory stays bounded however long it is paused.
// It is only called once the partition has delivered a record: pausing right after an assignment can lose the
// assignment's start offset (librdkafka issue 2190).
func (c *Consumer) pause(tp stream.TopicPartition) error {
	if c.paused[tp] {
		return nil
	}
	if err := c.k.Pause([]kafka.TopicPartition{ktp(tp, kafka.OffsetInvalid)}); err != nil {
		return fmt.Errorf("pause %s: %w", tp, err)
	}
	c.paused[tp] = true
	return nil
}

// Rewind moves every assigned partition back to its committed offset, after an aborted transaction, so the
// aborted batch's records are read again. A partition with no committed offset goes back to the first record it
// delivered since it was assigned (where auto.offset.reset put it); one that delivered nothing has not moved.
// Carried records are dropped (they are read again) and every partition is resumed.
func (c *Consumer) Rewind(ctx context.Context) error {
	c.carry = map[stream.TopicPartition][]stream.Record{}
	var resume []kafka.TopicPartition
	for tp := range c.paused {
		resume = append(resume, ktp(tp, kafka.OffsetInvalid))
	}
	if len(resume) > 0 {
		if err := c.k.Resume(resume); err != nil {
			return fmt.Errorf("resume %d partitions: %w", len(resume), err)
		}
		clear(c.paused)
	}
	var moved []kafka.TopicPartition
	for tp := range c.firstSeen {
		moved = append(moved, ktp(tp, kafka.OffsetInvalid))
	}
	if len(moved) == 0 {
		return nil
	}
	timeout := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	// With read_committed librdkafka asks for stable offsets, so this waits for the coordinator to settle the
	// aborted transaction's offsets instead of reading a half-written state.
	committed, err := c.k.Committed(moved, timeout)
	if err != nil {
		return fmt.Errorf("read committed offsets of %d partitions: %w", len(moved), err)
	}
	seeks := committed[:0]
	for _, p := range committed {
		tp := tpOf(p)
		if p.Error != nil {
			// An unanswered partition also comes back with a negative offset: taking that for "nothing committed"
			// would rewind to the first record seen and redo batches that did commit.
			return fmt.Errorf("read committed offset of %s: %w", tp, p.Error)
		}
		if p.Offset < 0 {
			// Nothing committed yet: the partition started where auto.offset.reset put it, at its first record.
			p.Offset = kafka.Offset(c.firstSeen[tp])
		}
		seeks = append(seeks, p)
	}
	// Seek waits until the fetcher has moved, and librdkafka discards records fetched from the old position, so
	// the next Poll cannot return a record from before the rewind.
	res, err := c.k.Seek(seeks, timeout)
	if err != nil {
		return fmt.Errorf("seek %d partitions to committed offsets: %w", len(seeks), err)
	}
	positions := make([]string, 0, len(res))
	for _, p := range res {
		if p.Error != nil {
			return fmt.Errorf("seek %s to offset %d: %w", tpOf(p), p.Offset, p.Error)
		}
		positions = append(positions, fmt.Sprintf("%s@%d", tpOf(p), p.Offset))
		c.rewound[tpOf(p)] = true
	}
	c.log.Info("rewound to committed offsets", "positions", positions)
	return nil
}

// Assigned returns the partitions currently assigned to this member.
func (c *Consumer) Assigned() []stream.TopicPartition {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]stream.TopicPartition, 0, len(c.assigned))
	for tp := range c.assigned {
		out = append(out, tp)
	}
	return out
}

// Lags returns, for each assigned partition, the records not yet processed: the high watermark last seen by the
// fetcher minus our position, plus records carried over. It asks no broker itself; a paused partition's high
// watermark, which the fetcher no longer sees, comes from a query in the background (at most once a second),
// so that its lag keeps growing while records arrive. -1 means not known yet (nothing
// fetched since the assignment). Under read_committed a transactional input's commit markers occupy offsets, so
// a caught-up partition can show a lag of 1. Their total decides the next batch's size (batchSize), so Lags is
// called on the goroutine that calls Assemble, before each batch.
func (c *Consumer) Lags() map[stream.TopicPartition]int64 {
	assigned := c.Assigned()
	lags := make(map[stream.TopicPartition]int64, len(assigned))
	parts := make([]kafka.TopicPartition, 0, len(assigned))
	for _, tp := range assigned {
		lags[tp] = -1
		parts = append(parts, ktp(tp, kafka.OffsetInvalid))
	}
	c.waiting = 0
	if len(parts) == 0 {
		return lags
	}
	pos, err := c.k.Position(parts)
	if err != nil {
		return lags
	}
	c.mu.Lock()
	queried := maps.Clone(c.pausedHigh)
	c.mu.Unlock()
	for _, p := range pos {
		tp := tpOf(p)
		_, high, err := c.k.Watermarks(tp)
		if err != nil || high < 0 || p.Offset < 0 {
			continue
		}
		if c.paused[tp] {
			high = max(high, queried[tp])
		}
		lags[tp] = max(0, high-int64(p.Offset)) + int64(len(c.carry[tp]))
		c.waiting += lags[tp]
	}
	c.refreshPausedHighs()
	return lags
}

// refreshPausedHighs asks the leaders of the paused partitions for their high watermarks, in the background and
// at most once a second, for Lags.
func (c *Consumer) refreshPausedHighs() {
	if len(c.paused) == 0 || time.Since(c.lastQuery) < time.Second {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.querying {
		return
	}
	c.querying, c.lastQuery = true, time.Now()
	paused := slices.Collect(maps.Keys(c.paused))
	c.queries.Add(1)
	go func() {
		defer c.queries.Done()
		highs := make(map[stream.TopicPartition]int64, len(paused))
		for _, tp := range paused {
			if _, high, err := c.k.QueryWatermarks(tp, watermarkTimeout); err == nil {
				highs[tp] = high
			}
		}
		c.mu.Lock()
		c.pausedHigh, c.querying = highs, false
		c.mu.Unlock()
	}()
}

// watermarkTimeout bounds one watermark query of a paused partition.
const watermarkTimeout = 2 * time.Second

// TakeRevoked returns the partitions revoked or lost since the last call. State kept per partition (the
// de-duplication store) must be dropped for them: if one comes back, another member may have changed it since.
func (c *Consumer) TakeRevoked() []stream.TopicPartition {
	c.mu.Lock()
	defer c.mu.Unlock()
	revoked := c.revoked
	c.revoked = nil
	return revoked
}

// Joined reports whether the consumer is a member of its group now (it has a member id), with partitions or not.
func (c *Consumer) Joined() bool {
	md, err := c.k.GroupMetadata()
	return err == nil && md.MemberID() != ""
}

// OffsetResets counts offsets found out of range (deleted by retention) and reset per auto.offset.reset.
func (c *Consumer) OffsetResets() uint64 { return c.resets.Load() }

// GroupMetadata returns the member's group id, generation and member id, for SendOffsetsToTransaction. Take it
// after polling the batch, as late as possible: it must describe a generation in which the member owns the
// batch's partitions, and a rebalance that completed since the batch was polled has moved the group to a newer
// generation (offsets sent with an older one are refused). The partitions are still the member's then, as long
// as revocations wait for the transaction (SetRevokeBarrier).
//
// If the member's session ended since the batch was polled (librdkafka noticed the session timeout, or the
// coordinator no longer knows the member) it returns ErrAssignmentLost: librdkafka has then reset the member id
// and generation, and offsets sent with such metadata would pass as those of a producer outside any group, which
// the coordinator accepts, over the partitions' new owner. librdkafka can reset the member id and generation
// without flagging the assignment lost, so the metadata itself is checked too, after it was taken.
func (c *Consumer) GroupMetadata() (*librdkafka.GroupMetadata, error) {
	md, err := c.k.GroupMetadata()
	if err != nil {
		return nil, fmt.Errorf("get consumer group metadata: %w", err)
	}
	if c.k.AssignmentLost() || md.MemberID() == "" || md.Generation() < 0 {
		return nil, ErrAssignmentLost
	}
	return md, nil
}

// ErrAssignmentLost means the member lost its partitions after the batch was polled; the next poll hands them
// back to the group (the rebalance callback drops their records).
var ErrAssignmentLost = errors.New("consumer group session lost since the batch was polled: its partitions may have moved to another member")

// CommitOffsets commits offsets (next offset to read, per partition) directly, for at_least_once. The call
// blocks until the coordinator answers; it has no deadline of its own.
func (c *Consumer) CommitOffsets(offsets map[stream.TopicPartition]int64) error {
	parts := make([]kafka.TopicPartition, 0, len(offsets))
	for tp, off := range offsets {
		parts = append(parts, ktp(tp, kafka.Offset(off)))
	}
	res, err := c.k.Commit(parts)
	if err != nil {
		return fmt.Errorf("commit offsets of %d partitions: %w", len(parts), err)
	}
	for _, p := range res {
		if p.Error != nil {
			return fmt.Errorf("commit offset %d of %s: %w", p.Offset, tpOf(p), p.Error)
		}
	}
	return nil
}

// Close leaves the group (a static member keeps its partitions until its session times out, so that a restart
// gets them back without a rebalance) and closes the client.
//
// librdkafka's close waits for the group coordinator; after a broker was killed it has been seen to wait forever
// with its assignment lost, which kept a fenced processor from exiting and being restarted. So Close gives up
// after closeTimeout: the process is exiting, the OS frees what librdkafka holds, and the group expires the
// member by its session timeout as it would for a crash.
func (c *Consumer) Close() error {
	done := make(chan error, 1)
	go func() {
		c.queries.Wait() // a watermark query still running uses the handle
		done <- c.k.Close()
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("close consumer: %w", err)
		}
		return nil
	case <-time.After(closeTimeout):
		return fmt.Errorf("close consumer: not closed after %s (group coordinator unreachable?); leaving it to the session timeout", closeTimeout)
	}
}

// closeTimeout bounds Close; see there.
const closeTimeout = 10 * time.Second

func tpOf(p kafka.TopicPartition) stream.TopicPartition {
	return stream.TopicPartition{Topic: *p.Topic, Partition: p.Partition}
}

func ktp(tp stream.TopicPartition, off kafka.Offset) kafka.TopicPartition {
	topic := tp.Topic
	return kafka.TopicPartition{Topic: &topic, Partition: tp.Partition, Offset: off}
}

// startAtCommitted gives each newly assigned partition its committed offset as explicit start position, read
// here with read_committed's stable-offset rule. Left to librdkafka (no offset: "start at the committed one"),
// a partition that was lost and assigned back at once has been seen, after a broker was SIGKILLed, to start
// fetching where this member had last consumed before the loss (the end of a batch whose transaction was then
// aborted), not at the committed offset that the rewind had just sought: that batch was lost. A partition with
// nothing committed, or whose lookup fails, is left to librdkafka (auto.offset.reset, or its own lookup).
func (c *Consumer) startAtCommitted(parts []kafka.TopicPartition) []kafka.TopicPartition {
	if len(parts) == 0 {
		return parts
	}
	committed, err := c.k.Committed(parts, committedTimeout)
	if err != nil || len(committed) != len(parts) {
		c.log.Warn("read committed offsets of assigned partitions; librdkafka looks them up itself", "error", err)
		return parts
	}
	for i := range committed {
		if committed[i].Error != nil || committed[i].Offset < 0 {
			committed[i].Offset, committed[i].Error = kafka.OffsetInvalid, nil
		}
	}
	return committed
}

// committedTimeout bounds the committed-offset lookup of an assignment.
const committedTimeout = 10 * time.Second

// offsetsOf lists the offsets a partition list carries (-1001: unset, librdkafka decides).
func offsetsOf(parts []kafka.TopicPartition) []int64 {
	out := make([]int64, len(parts))
	for i, p := range parts {
		out[i] = int64(p.Offset)
	}
	return out
}

func names(parts []kafka.TopicPartition) []string {
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = tpOf(p).String()
	}
	return out
}
