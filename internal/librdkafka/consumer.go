package librdkafka

/*
#include <stdlib.h>
#include "eos.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"runtime/cgo"
	"strings"
	"time"
	"unsafe"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/stream"
)

// Consumer is a group member whose records are read a batch at a time. Its methods are called from one goroutine,
// except Close, which waits for none of them to run.
type Consumer struct {
	rk     *C.rd_kafka_t
	q      *C.rd_kafka_queue_t
	cl     *C.struct_eos_client
	handle cgo.Handle
	batch  *C.struct_eos_batch

	lastTopic string            // the topic of the last record converted: nearly every record has the previous one's
	topics    map[string]string // the topic names seen, so a record's topic costs no allocation
}

// NewConsumer creates a consumer with the given librdkafka properties. It needs group.id; the rebalance callback is
// always registered, so hooks.Rebalance must apply each change.
func NewConsumer(props map[string]string, hooks Hooks) (*Consumer, error) {
	rk, cl, h, err := newHandle(C.EOS_RD_CONSUMER, "consumer", props, hooks)
	if err != nil {
		return nil, err
	}
	return &Consumer{
		rk:     rk,
		q:      C.rd_kafka_queue_get_consumer(rk),
		cl:     cl,
		handle: h,
		batch:  (*C.struct_eos_batch)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_eos_batch{})))),
		topics: map[string]string{},
	}, nil
}

// Subscribe joins the group for the topics.
func (c *Consumer) Subscribe(topics []string) error {
	list := C.rd_kafka_topic_partition_list_new(C.int(len(topics)))
	defer C.rd_kafka_topic_partition_list_destroy(list)
	for _, t := range topics {
		ct := C.CString(t)
		C.eos_list_add(list, ct, -1, C.EOS_RD_OFFSET_INVALID)
		C.free(unsafe.Pointer(ct))
	}
	if err := codeError(C.rd_kafka_subscribe(c.rk, list)); err != nil {
		return fmt.Errorf("subscribe to %s: %w", strings.Join(topics, ","), err)
	}
	return nil
}

// PartitionError is an error librdkafka reports for one partition in place of a record.
type PartitionError struct {
	Partition stream.TopicPartition
	Offset    int64
	Err       error
}

// Consume returns at most max records, appended to dst, in the order librdkafka delivered them: those already
// fetched at once, and only when there are none it waits up to timeout for the first. Rebalance and error callbacks run inside it. Keys, values and headers are copies in
// one byte array per call, so the records stay valid for as long as the caller keeps them.
func (c *Consumer) Consume(timeout time.Duration, max int, dst []stream.Record) ([]stream.Record, []PartitionError, error) {
	n := C.eos_consume(c.q, ms(int64(timeout)), c.batch, C.size_t(max))
	if n < 0 {
		return dst, nil, fmt.Errorf("consume: %w", codeError(C.int(n)))
	}
	if n == 0 {
		return dst, nil, nil
	}
	defer C.eos_consume_release(c.batch)
	recs := unsafe.Slice(c.batch.recs, int(n))
	hdrs := unsafe.Slice(c.batch.hdrs, int(c.batch.nhdrs))

	size := 0
	for i := range recs {
		size += int(max0(recs[i].key_len) + max0(recs[i].value_len))
	}
	for i := range hdrs {
		size += int(hdrs[i].name_len + max0(hdrs[i].value_len))
	}
	arena := make([]byte, 0, size)
	var headers []stream.Header
	if len(hdrs) > 0 {
		headers = make([]stream.Header, len(hdrs))
	}
	var errs []PartitionError
	for i := range recs {
		r := &recs[i]
		tp := stream.TopicPartition{Topic: c.topic(r.topic, r.topic_len), Partition: int32(r.partition)}
		if r.err != C.EOS_RD_ERR_NO_ERROR {
			msg := ""
			if r.value_len > 0 {
				msg = C.GoStringN((*C.char)(r.value), C.int(r.value_len))
			}
			errs = append(errs, PartitionError{Partition: tp, Offset: int64(r.offset),
				Err: &Error{code: kafka.ErrorCode(r.err), msg: msg}})
			continue
		}
		rec := stream.Record{Topic: tp.Topic, Partition: tp.Partition, Offset: int64(r.offset)}
		arena, rec.Key = appendBytes(arena, r.key, r.key_len)
		arena, rec.Value = appendBytes(arena, r.value, r.value_len)
		if r.timestamp >= 0 {
			rec.Timestamp = time.UnixMilli(int64(r.timestamp))
		}
		if r.hdr_count > 0 {
			hs := headers[r.hdr_first : r.hdr_first+r.hdr_count : r.hdr_first+r.hdr_count]
			for k := range hs {
				h := &hdrs[int(r.hdr_first)+k]
				var name []byte
				arena, name = appendBytes(arena, unsafe.Pointer(h.name), h.name_len)
				hs[k].Key = unsafe.String(unsafe.SliceData(name), len(name))
				arena, hs[k].Value = appendBytes(arena, h.value, h.value_len)
			}
			rec.Headers = hs
		}
		dst = append(dst, rec)
	}
	return dst, errs, nil
}

func max0(n C.int64_t) C.int64_t { return max(n, 0) }

// appendBytes copies n bytes at p into arena and returns the copy, capped so that appending to it cannot write
// over the next record's bytes; n < 0 is a null (nil) slice, n == 0 an empty one. arena never grows: its capacity
// was sized for the whole batch.
func appendBytes(arena []byte, p unsafe.Pointer, n C.int64_t) ([]byte, []byte) {
	if n < 0 {
		return arena, nil
	}
	start := len(arena)
	arena = append(arena, unsafe.Slice((*byte)(p), int(n))...)
	return arena, arena[start:len(arena):len(arena)]
}

// topic returns the topic name at p as a Go string, allocating only the first time a name is seen.
func (c *Consumer) topic(p *C.char, n C.int64_t) string {
	name := unsafe.String((*byte)(unsafe.Pointer(p)), int(n))
	if name == c.lastTopic {
		return c.lastTopic
	}
	s, ok := c.topics[name]
	if !ok {
		s = strings.Clone(name)
		c.topics[s] = s
	}
	c.lastTopic = s
	return s
}

// IncrementalAssign adds partitions to the assignment (cooperative rebalancing); called from the Rebalance hook.
func (c *Consumer) IncrementalAssign(parts []kafka.TopicPartition) error {
	list := partitionList(parts)
	defer C.rd_kafka_topic_partition_list_destroy(list)
	return takeError(C.rd_kafka_incremental_assign(c.rk, list))
}

// IncrementalUnassign removes partitions from the assignment; called from the Rebalance hook.
func (c *Consumer) IncrementalUnassign(parts []kafka.TopicPartition) error {
	list := partitionList(parts)
	defer C.rd_kafka_topic_partition_list_destroy(list)
	return takeError(C.rd_kafka_incremental_unassign(c.rk, list))
}

// AssignmentLost reports whether the member's assignment was lost (session timeout, fenced) rather than revoked.
func (c *Consumer) AssignmentLost() bool { return C.rd_kafka_assignment_lost(c.rk) != 0 }

// Pause stops fetching the partitions; librdkafka drops what it prefetched for them.
func (c *Consumer) Pause(parts []kafka.TopicPartition) error {
	return c.perPartition(parts, func(l *C.rd_kafka_topic_partition_list_t) C.int { return C.rd_kafka_pause_partitions(c.rk, l) })
}

// Resume fetches the partitions again from where the application last consumed.
func (c *Consumer) Resume(parts []kafka.TopicPartition) error {
	return c.perPartition(parts, func(l *C.rd_kafka_topic_partition_list_t) C.int { return C.rd_kafka_resume_partitions(c.rk, l) })
}

func (c *Consumer) perPartition(parts []kafka.TopicPartition, call func(*C.rd_kafka_topic_partition_list_t) C.int) error {
	res, err := onList(parts, func(l *C.rd_kafka_topic_partition_list_t) error { return codeError(call(l)) })
	if err != nil {
		return err
	}
	for _, p := range res {
		if p.Error != nil {
			return fmt.Errorf("%s/%d: %w", *p.Topic, p.Partition, p.Error)
		}
	}
	return nil
}

// Committed asks the group coordinator for the committed offsets of the partitions; each result carries its own
// error, if any.
func (c *Consumer) Committed(parts []kafka.TopicPartition, timeout time.Duration) ([]kafka.TopicPartition, error) {
	return onList(parts, func(l *C.rd_kafka_topic_partition_list_t) error {
		return codeError(C.rd_kafka_committed(c.rk, l, ms(int64(timeout))))
	})
}

// Position returns the offset after the last record consumed per partition (negative when none).
func (c *Consumer) Position(parts []kafka.TopicPartition) ([]kafka.TopicPartition, error) {
	return onList(parts, func(l *C.rd_kafka_topic_partition_list_t) error { return codeError(C.rd_kafka_position(c.rk, l)) })
}

// Seek moves the partitions' fetch positions to their offsets and waits until the fetcher has moved; records
// fetched from the old positions are discarded.
func (c *Consumer) Seek(parts []kafka.TopicPartition, timeout time.Duration) ([]kafka.TopicPartition, error) {
	return onList(parts, func(l *C.rd_kafka_topic_partition_list_t) error {
		return takeError(C.rd_kafka_seek_partitions(c.rk, l, ms(int64(timeout))))
	})
}

// Watermarks returns the low and high watermarks librdkafka last saw for a partition, asking no broker.
func (c *Consumer) Watermarks(tp stream.TopicPartition) (low, high int64, err error) {
	topic := C.CString(tp.Topic)
	defer C.free(unsafe.Pointer(topic))
	var l, h C.int64_t
	if err := codeError(C.rd_kafka_get_watermark_offsets(c.rk, topic, C.int32_t(tp.Partition), &l, &h)); err != nil {
		return 0, 0, err
	}
	return int64(l), int64(h), nil
}

// QueryWatermarks asks the partition's leader for its low and high watermarks, waiting up to timeout. Unlike
// Watermarks it is current for a partition that is not being fetched (paused). Safe beside Consume.
func (c *Consumer) QueryWatermarks(tp stream.TopicPartition, timeout time.Duration) (low, high int64, err error) {
	topic := C.CString(tp.Topic)
	defer C.free(unsafe.Pointer(topic))
	var l, h C.int64_t
	if err := codeError(C.rd_kafka_query_watermark_offsets(c.rk, topic, C.int32_t(tp.Partition), &l, &h, ms(int64(timeout)))); err != nil {
		return 0, 0, err
	}
	return int64(l), int64(h), nil
}

// GroupMetadata is the member's group id, member id and generation, for SendOffsetsToTransaction.
type GroupMetadata struct {
	md *C.rd_kafka_consumer_group_metadata_t
}

// MemberID is the member id the coordinator gave this member; empty when the member is not in the group.
func (g *GroupMetadata) MemberID() string {
	return C.GoString(C.rd_kafka_consumer_group_metadata_member_id(g.md))
}

// Generation is the group generation the member last joined; negative when it is not in the group.
func (g *GroupMetadata) Generation() int32 {
	return int32(C.rd_kafka_consumer_group_metadata_generation_id(g.md))
}

// GroupMetadata returns the member's current group metadata.
func (c *Consumer) GroupMetadata() (*GroupMetadata, error) {
	md := C.rd_kafka_consumer_group_metadata(c.rk)
	if md == nil {
		return nil, fmt.Errorf("no consumer group metadata (no group.id?)")
	}
	g := &GroupMetadata{md: md}
	runtime.AddCleanup(g, func(md *C.rd_kafka_consumer_group_metadata_t) { C.rd_kafka_consumer_group_metadata_destroy(md) }, md)
	return g, nil
}

// Commit commits the offsets synchronously, outside any transaction.
func (c *Consumer) Commit(offsets []kafka.TopicPartition) ([]kafka.TopicPartition, error) {
	return onList(offsets, func(l *C.rd_kafka_topic_partition_list_t) error { return codeError(C.rd_kafka_commit(c.rk, l, 0)) })
}

// FatalError returns the consumer's fatal error (e.g. a fenced static member), nil while it has none.
func (c *Consumer) FatalError() error { return fatalError(c.rk) }

// Close leaves the group and destroys the client. It may block as long as librdkafka's close does.
func (c *Consumer) Close() error {
	C.eos_consume_release(c.batch)
	C.rd_kafka_queue_destroy(c.q)
	err := codeError(C.rd_kafka_consumer_close(c.rk))
	C.rd_kafka_destroy(c.rk)
	C.eos_batch_free(c.batch)
	C.eos_client_free(c.cl)
	c.handle.Delete()
	return err
}
