package librdkafka

/*
#include <stdlib.h>
#include "eos.h"
*/
import "C"

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"runtime/cgo"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/stream"
)

// Producer is an idempotent, optionally transactional producer. Produce, the transactional calls and Flush are
// called from one goroutine; delivery reports are served by a goroutine of its own and only counted.
type Producer struct {
	rk     *C.rd_kafka_t
	cl     *C.struct_eos_client
	handle cgo.Handle
	stop   chan struct{}
	polled sync.WaitGroup

	rkts map[string]topicHandle // one per topic produced to

	// runs sizes the placement of keyless records (zero: librdkafka's partitioner places them).
	runs runLimits

	// Reused by every Produce call: C descriptors of the records and one byte arena holding their keys, values and
	// headers. librdkafka copies each record (RD_KAFKA_MSG_F_COPY) before the call returns.
	outs  []C.struct_eos_out
	hdrs  []C.struct_eos_out_hdr
	arena []byte
}

type topicHandle struct {
	rkt       *C.rd_kafka_topic_t
	placement *C.struct_eos_placement // nil when librdkafka's partitioner places keyless records; C memory
}

// requestHeaderBytes is what a run leaves of a request's bytes for the request's own header, topic name and
// transactional.id (a few hundred bytes at most).
const requestHeaderBytes = 1024

// runLimits bound a run of keyless records to what one produce request holds.
type runLimits struct{ bytes, records int64 }

// NewProducer creates a producer with the given librdkafka properties and starts serving its delivery reports.
//
// Unless props choose a partitioner or set sticky.partitioning.linger.ms, keyless records (no key or an empty
// one) are placed in runs of about one produce request (batch.size, batch.num.messages), on each partition in
// turn, instead of by librdkafka's sticky partitioner; keyed records are placed as librdkafka's default
// partitioner (consistent_random) places them.
func NewProducer(props map[string]string, hooks Hooks) (*Producer, error) {
	runs, props, err := keylessRuns(props)
	if err != nil {
		return nil, err
	}
	rk, cl, h, err := newHandle(C.EOS_RD_PRODUCER, "producer", props, hooks)
	if err != nil {
		return nil, err
	}
	p := &Producer{rk: rk, cl: cl, handle: h, stop: make(chan struct{}), rkts: map[string]topicHandle{}, runs: runs}
	p.polled.Add(1)
	go p.poll()
	return p, nil
}

// poll serves delivery reports and error events until Close. Without it, commit and abort (which flush) would
// still serve them, but a failing broker's events would wait until then.
func (p *Producer) poll() {
	defer p.polled.Done()
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		C.rd_kafka_poll(p.rk, 100)
	}
}

// InitTransactions registers the transactional.id, fencing older producers with the same id.
func (p *Producer) InitTransactions(timeout time.Duration) error {
	return takeError(C.rd_kafka_init_transactions(p.rk, ms(int64(timeout))))
}

// BeginTransaction starts a transaction.
func (p *Producer) BeginTransaction() error { return takeError(C.rd_kafka_begin_transaction(p.rk)) }

// SendOffsetsToTransaction adds the consumer's offsets to the transaction.
func (p *Producer) SendOffsetsToTransaction(offsets []kafka.TopicPartition, group *GroupMetadata, timeout time.Duration) error {
	list := partitionList(offsets)
	defer C.rd_kafka_topic_partition_list_destroy(list)
	err := takeError(C.rd_kafka_send_offsets_to_transaction(p.rk, list, group.md, ms(int64(timeout))))
	runtime.KeepAlive(group)
	return err
}

// CommitTransaction flushes and commits; a negative timeout waits as long as the transaction may live.
func (p *Producer) CommitTransaction(timeout time.Duration) error {
	return takeError(C.rd_kafka_commit_transaction(p.rk, ms(int64(timeout))))
}

// AbortTransaction purges what is not yet delivered and aborts; a negative timeout waits as long as needed.
func (p *Producer) AbortTransaction(timeout time.Duration) error {
	return takeError(C.rd_kafka_abort_transaction(p.rk, ms(int64(timeout))))
}

// BeginEpoch starts counting delivery failures for a new transaction (or batch): a late report for a record
// produced under an earlier epoch (purged by an abort) is not blamed on this one.
func (p *Producer) BeginEpoch(epoch uint64) { C.eos_begin_epoch(p.cl, C.uint64_t(epoch)) }

// Pending is the number of records produced whose delivery report has not been served yet.
func (p *Producer) Pending() int64 { return int64(C.eos_pending(p.cl)) }

// WaitForRoom is for a producer whose queue was full (QUEUE_FULL): it waits until a quarter of the records
// pending then have been reported, so that the queue takes that many again, or until timeout. It reports
// whether there is room. Waiting for the queue to empty instead (a flush) would leave the broker idle until the
// queue refilled.
func (p *Producer) WaitForRoom(timeout time.Duration) bool {
	return C.eos_wait_room(p.cl, C.int(timeout.Milliseconds())) != 0
}

// DeliveryError is the current epoch's first failed delivery, nil when none.
func (p *Producer) DeliveryError() error {
	var topic [256]C.char
	var partition C.int32_t
	code := C.eos_delivery_error(p.cl, &topic[0], C.size_t(len(topic)), &partition)
	if code == C.EOS_RD_ERR_NO_ERROR {
		return nil
	}
	return fmt.Errorf("deliver record to %s/%d: %w", C.GoString(&topic[0]), int32(partition), codeError(code))
}

// Flush serves delivery reports until none is outstanding or timeout passes.
func (p *Producer) Flush(timeout time.Duration) error {
	return codeError(C.rd_kafka_flush(p.rk, ms(int64(timeout))))
}

// One C call is handed at most maxChunkRecords records and maxArena bytes of them, so that the staging buffers,
// reused for the producer's lifetime, stay small whatever the batch: staging a whole batch of 20,000 small
// records at once kept several MB of descriptors and copies live for nothing, the call costing no more per
// record in chunks of a thousand.
const (
	maxChunkRecords = 1024
	maxArena        = 1 << 20
)

// Produce hands recs to librdkafka in order, each to r.Topic (defaultTopic when empty) and, when toPartition, to
// r.Partition (otherwise the partitioner places it by key). It returns how many were produced: on an error,
// recs[n] is the record librdkafka refused (e.g. QUEUE_FULL, or MSG_SIZE_TOO_LARGE for the record itself) and
// none after it was produced.
func (p *Producer) Produce(recs []stream.Record, defaultTopic string, toPartition bool) (int, error) {
	done := 0
	for done < len(recs) {
		n, err := p.produceChunk(recs[done:], defaultTopic, toPartition)
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// produceChunk produces a prefix of recs: at most maxChunkRecords, whose bytes fit in maxArena (at least one record).
func (p *Producer) produceChunk(recs []stream.Record, defaultTopic string, toPartition bool) (int, error) {
	p.outs, p.hdrs, p.arena = p.outs[:0], p.hdrs[:0], p.arena[:0]
	var lastTopic string
	var last topicHandle
	for i := range recs {
		r := &recs[i]
		if i == maxChunkRecords || i > 0 && len(p.arena)+recordBytes(r) > maxArena {
			break
		}
		topic := r.Topic
		if topic == "" {
			topic = defaultTopic
		}
		if last.rkt == nil || topic != lastTopic {
			t, err := p.topic(topic)
			if err != nil {
				if len(p.outs) == 0 {
					return 0, err
				}
				break // the records before it are produced; the next call starts with it and fails
			}
			lastTopic, last = topic, t
		}
		o := C.struct_eos_out{rkt: last.rkt, placement: last.placement, partition: C.EOS_RD_PARTITION_UA,
			hdr_first: C.int32_t(len(p.hdrs)), hdr_count: C.int32_t(len(r.Headers))}
		if toPartition {
			o.partition = C.int32_t(r.Partition)
		}
		if !r.Timestamp.IsZero() {
			o.timestamp = C.int64_t(r.Timestamp.UnixMilli())
		}
		o.key_off, o.key_len = p.stage(r.Key)
		o.value_off, o.value_len = p.stage(r.Value)
		for _, h := range r.Headers {
			var oh C.struct_eos_out_hdr
			oh.name_off, oh.name_len = C.int64_t(len(p.arena)), C.int64_t(len(h.Key))
			p.arena = append(p.arena, h.Key...)
			oh.value_off, oh.value_len = p.stage(h.Value)
			p.hdrs = append(p.hdrs, oh)
		}
		p.outs = append(p.outs, o)
	}
	if len(p.arena) == 0 {
		p.arena = append(p.arena, 0) // a valid pointer to pass, though nothing reads it
	}
	var hdrs *C.struct_eos_out_hdr
	if len(p.hdrs) > 0 {
		hdrs = &p.hdrs[0]
	}
	var done C.size_t
	code := C.eos_produce(p.rk, p.cl, &p.outs[0], C.size_t(len(p.outs)), hdrs, (*C.char)(unsafe.Pointer(&p.arena[0])), &done)
	return int(done), codeError(code)
}

// stage copies b into the arena and returns its offset and length (-1 for nil).
func (p *Producer) stage(b []byte) (C.int64_t, C.int64_t) {
	if b == nil {
		return 0, -1
	}
	off := len(p.arena)
	p.arena = append(p.arena, b...)
	return C.int64_t(off), C.int64_t(len(b))
}

func recordBytes(r *stream.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// topic returns the handle for a topic, creating it the first time.
func (p *Producer) topic(topic string) (topicHandle, error) {
	if t, ok := p.rkts[topic]; ok {
		return t, nil
	}
	ct := C.CString(topic)
	defer C.free(unsafe.Pointer(ct))
	var t topicHandle
	if p.runs.records > 0 {
		t.placement = (*C.struct_eos_placement)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_eos_placement{}))))
		t.placement.max_bytes = C.int64_t(p.runs.bytes)
		t.placement.max_msgs = C.int64_t(p.runs.records)
		t.placement.first = C.int32_t(rand.Int32N(1 << 30))
	}
	t.rkt = C.eos_topic_new(p.rk, ct, t.placement)
	if t.rkt == nil {
		C.free(unsafe.Pointer(t.placement))
		return topicHandle{}, &Error{code: kafka.ErrInvalidArg, msg: fmt.Sprintf("invalid topic name %q", topic)}
	}
	if t.placement != nil && C.rd_kafka_topic_opaque(t.rkt) != unsafe.Pointer(t.placement) {
		// librdkafka already had a handle for the topic (created for its own use) and kept its configuration.
		C.free(unsafe.Pointer(t.placement))
		t.placement = nil
	}
	p.rkts[topic] = t
	return t, nil
}

// keylessRuns returns how runs of keyless records are bounded (zero when props leave their placement to
// librdkafka) and the properties to create the client with: sticky.partitioning.linger.ms 0, so that librdkafka
// asks the partitioner for keyless records too.
func keylessRuns(props map[string]string) (runLimits, map[string]string, error) {
	for _, own := range []string{"partitioner", "sticky.partitioning.linger.ms"} {
		if _, ok := props[own]; ok {
			return runLimits{}, props, nil
		}
	}
	limit := func(name string, byDefault int64) (int64, error) {
		v, ok := props[name]
		if !ok {
			return byDefault, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return 0, &ConfigRefused{Client: "producer", Reason: fmt.Sprintf("%s=%q is not a positive integer", name, v)}
		}
		return n, nil
	}
	// librdkafka's defaults; a request holds at most min(batch.size, message.max.bytes) bytes, its header included.
	batchBytes, err := limit("batch.size", 1_000_000)
	if err != nil {
		return runLimits{}, nil, err
	}
	maxBytes, err := limit("message.max.bytes", 1_000_000)
	if err != nil {
		return runLimits{}, nil, err
	}
	records, err := limit("batch.num.messages", 10_000)
	if err != nil {
		return runLimits{}, nil, err
	}
	withLinger := maps.Clone(props)
	withLinger["sticky.partitioning.linger.ms"] = "0"
	return runLimits{bytes: max(min(batchBytes, maxBytes)-requestHeaderBytes, 1), records: records}, withLinger, nil
}

// FatalError returns the producer's fatal error (fenced, an idempotence failure), nil while it has none.
func (p *Producer) FatalError() error { return fatalError(p.rk) }

// Close stops serving reports and destroys the client; records not yet delivered are dropped.
func (p *Producer) Close() {
	close(p.stop)
	p.polled.Wait()
	for _, t := range p.rkts {
		C.rd_kafka_topic_destroy(t.rkt)
	}
	C.rd_kafka_destroy(p.rk)
	for _, t := range p.rkts {
		C.free(unsafe.Pointer(t.placement)) // the partitioner may use it until the client is gone
	}
	C.eos_client_free(p.cl)
	p.handle.Delete()
}
