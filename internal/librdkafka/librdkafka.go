// Package librdkafka is the processor's only direct use of librdkafka: the consumer and the producer of the
// consume-transform-produce loop, on handles of their own, with the per-record work done in C once per batch.
//
// Why not confluent-kafka-go's clients: they cross from Go to C once per record and allocate about five Go objects
// per consumed and six per produced record (a message, its topic, key and value copies, a delivery report), which
// made the client, not Kafka, the limit of the processor. Here a consume call takes up to a whole batch from
// librdkafka (rd_kafka_consume_batch_queue) and copies its keys, values and headers into one Go byte arena; a
// produce call copies a batch's outputs into one arena and hands them to librdkafka in one C loop; delivery
// reports are counted in C.
//
// Why a handle of its own: confluent-kafka-go's consumer runs in event mode without a rebalance callback, so
// reading its queue in batches would let librdkafka assign partitions by itself on a rebalance (bypassing the
// cooperative handling in package consume) and swallow its error events. This package's consumer registers a
// rebalance callback that librdkafka serves inside the batch call, on the calling goroutine, and its group metadata
// goes straight to this package's producer for send_offsets_to_transaction.
//
// confluent-kafka-go remains the source of librdkafka: the prototypes are declared in decl.h and resolve at the final
// link against the archive it bundles (the blank import below makes sure it is linked), and TestDeclarations
// MatchTheBundledHeader pins them to that version. Nothing outside packages consume and produce imports this one,
// but the processor's configuration check, which asks librdkafka about pass-through properties (CheckProperty),
// and the benchmark's latency reader, which must read faster than the processor writes.
package librdkafka

/*
#cgo CFLAGS: -O2 -fno-strict-aliasing
#include <stdlib.h>
#include "eos.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime/cgo"
	"sort"
	"strings"
	"unsafe"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// CheckProperty asks librdkafka whether it knows the client property name and accepts value for it (type, range,
// enumeration), without creating a client. Checks that need the whole configuration or files come at creation.
func CheckProperty(name, value string) error {
	conf := C.rd_kafka_conf_new()
	defer C.rd_kafka_conf_destroy(conf)
	cname, cvalue := C.CString(name), C.CString(value)
	defer C.free(unsafe.Pointer(cname))
	defer C.free(unsafe.Pointer(cvalue))
	var errstr [512]C.char
	if C.rd_kafka_conf_set(conf, cname, cvalue, &errstr[0], C.size_t(len(errstr))) != 0 {
		return errors.New(strings.TrimSpace(C.GoString(&errstr[0])))
	}
	return nil
}

// Version is librdkafka's version as an integer (0xMMmmrrxx).
func Version() int { return int(C.rd_kafka_version()) }

// VersionString is librdkafka's version, e.g. "2.11.1".
func VersionString() string { return C.GoString(C.rd_kafka_version_str()) }

// Error is a failed librdkafka call: its error code and message, and what librdkafka says may be done about it.
// Its methods are those of confluent-kafka-go's kafka.Error, so code that classifies errors handles both alike.
type Error struct {
	code             kafka.ErrorCode
	msg              string
	fatal            bool
	retriable        bool
	txnRequiresAbort bool
}

func (e *Error) Error() string {
	if e.msg == "" {
		return e.code.String()
	}
	return e.msg
}

// Code is the librdkafka error code, the same numbers as kafka.ErrorCode's.
func (e *Error) Code() kafka.ErrorCode { return e.code }

// IsFatal says the client can no longer be used.
func (e *Error) IsFatal() bool { return e.fatal }

// IsRetriable says the same call may succeed if made again.
func (e *Error) IsRetriable() bool { return e.retriable }

// TxnRequiresAbort says the transaction must be aborted.
func (e *Error) TxnRequiresAbort() bool { return e.txnRequiresAbort }

// codeError turns a plain rd_kafka_resp_err_t into an error; nil for no error.
func codeError(code C.int) error {
	if code == C.EOS_RD_ERR_NO_ERROR {
		return nil
	}
	return &Error{code: kafka.ErrorCode(code), msg: C.GoString(C.rd_kafka_err2str(code))}
}

// takeError turns an rd_kafka_error_t into an Error and destroys it; nil for none.
func takeError(e *C.rd_kafka_error_t) error {
	if e == nil {
		return nil
	}
	defer C.rd_kafka_error_destroy(e)
	return &Error{
		code:             kafka.ErrorCode(C.rd_kafka_error_code(e)),
		msg:              C.GoString(C.rd_kafka_error_string(e)),
		fatal:            C.rd_kafka_error_is_fatal(e) != 0,
		retriable:        C.rd_kafka_error_is_retriable(e) != 0,
		txnRequiresAbort: C.rd_kafka_error_txn_requires_abort(e) != 0,
	}
}

// Hooks receive what a client reports outside its calls' return values.
type Hooks struct {
	// Error receives librdkafka's error events (broker down, authentication refused, a fatal error), on the
	// goroutine that is consuming for a consumer and on the producer's poll goroutine for a producer.
	Error func(kafka.Error)
	// Log receives librdkafka's log lines, from librdkafka's own threads.
	Log func(kafka.LogEvent)
	// Rebalance (consumer only) is called inside Consume when partitions are assigned or revoked; it must call
	// IncrementalAssign or IncrementalUnassign with them.
	Rebalance func(assign bool, partitions []kafka.TopicPartition)
	// Stats receives librdkafka's statistics, its JSON document (see its STATISTICS.md), every
	// statistics.interval.ms (none when 0, librdkafka's default), where Error events are served.
	Stats func(json []byte)
}

// client is what the C callbacks find through their cgo.Handle.
type client struct {
	name  string
	hooks Hooks
}

// newHandle creates a librdkafka client of the given type with the properties, its callbacks routed to hooks.
func newHandle(typ C.uint, name string, props map[string]string, hooks Hooks) (*C.rd_kafka_t, *C.struct_eos_client, cgo.Handle, error) {
	keys := make([]string, 0, len(props))
	for k := range props {
		if strings.HasPrefix(k, "go.") {
			continue // confluent-kafka-go's own settings mean nothing to librdkafka
		}
		keys = append(keys, k)
	}
	sort.Strings(keys) // a refused property is reported the same way every time
	names := C.malloc(C.size_t(len(keys)+1) * C.size_t(unsafe.Sizeof(uintptr(0))))
	values := C.malloc(C.size_t(len(keys)+1) * C.size_t(unsafe.Sizeof(uintptr(0))))
	defer C.free(names)
	defer C.free(values)
	ns := unsafe.Slice((**C.char)(names), len(keys)+1)
	vs := unsafe.Slice((**C.char)(values), len(keys)+1)
	for i, k := range keys {
		ns[i], vs[i] = C.CString(k), C.CString(props[k])
	}
	defer func() {
		for i := range keys {
			C.free(unsafe.Pointer(ns[i]))
			C.free(unsafe.Pointer(vs[i]))
		}
	}()
	h := cgo.NewHandle(&client{name: name, hooks: hooks})
	cl := C.eos_client_new(C.uintptr_t(h))
	var errstr [512]C.char
	rk := C.eos_new(typ, (**C.char)(names), (**C.char)(values), C.int(len(keys)), cl, &errstr[0], C.size_t(len(errstr)))
	if rk == nil {
		C.eos_client_free(cl)
		h.Delete()
		return nil, nil, 0, &ConfigRefused{Client: name, Reason: C.GoString(&errstr[0])}
	}
	return rk, cl, h, nil
}

// ConfigRefused is the error of a client librdkafka would not create: a configuration whose properties are each
// valid but do not go together (e.g. fetch.max.bytes below message.max.bytes), which only creating the client
// checks.
type ConfigRefused struct {
	Client string // "consumer" or "producer"
	Reason string // librdkafka's
}

func (e *ConfigRefused) Error() string { return fmt.Sprintf("create %s: %s", e.Client, e.Reason) }

// fatalError returns the client's fatal error, nil while it has none.
func fatalError(rk *C.rd_kafka_t) error {
	var errstr [512]C.char
	code := C.rd_kafka_fatal_error(rk, &errstr[0], C.size_t(len(errstr)))
	if code == C.EOS_RD_ERR_NO_ERROR {
		return nil
	}
	return &Error{code: kafka.ErrorCode(code), msg: C.GoString(&errstr[0]), fatal: true}
}

// partitionList builds a C topic partition list; free it with C.rd_kafka_topic_partition_list_destroy.
func partitionList(parts []kafka.TopicPartition) *C.rd_kafka_topic_partition_list_t {
	list := C.rd_kafka_topic_partition_list_new(C.int(len(parts)))
	for _, p := range parts {
		topic := C.CString(*p.Topic)
		C.eos_list_add(list, topic, C.int32_t(p.Partition), C.int64_t(p.Offset))
		C.free(unsafe.Pointer(topic))
	}
	return list
}

// onList runs call on a C copy of parts and returns the list as librdkafka left it: offsets and per-partition
// errors filled in.
func onList(parts []kafka.TopicPartition, call func(*C.rd_kafka_topic_partition_list_t) error) ([]kafka.TopicPartition, error) {
	list := partitionList(parts)
	defer C.rd_kafka_topic_partition_list_destroy(list)
	if err := call(list); err != nil {
		return nil, err
	}
	return goPartitions(list), nil
}

// goPartitions copies a C topic partition list, with each element's offset and error.
func goPartitions(list *C.rd_kafka_topic_partition_list_t) []kafka.TopicPartition {
	if list == nil {
		return nil
	}
	var cnt C.int
	elems := C.eos_list_elems(list, &cnt)
	out := make([]kafka.TopicPartition, int(cnt))
	for i, e := range unsafe.Slice(elems, int(cnt)) {
		topic := C.GoString(e.topic)
		out[i] = kafka.TopicPartition{Topic: &topic, Partition: int32(e.partition), Offset: kafka.Offset(e.offset)}
		if e.err != C.EOS_RD_ERR_NO_ERROR {
			out[i].Error = codeError(e.err)
		}
	}
	return out
}

//export eosRebalance
func eosRebalance(handle C.uintptr_t, err C.int, parts *C.rd_kafka_topic_partition_list_t) {
	c := cgo.Handle(handle).Value().(*client)
	if c.hooks.Rebalance != nil {
		c.hooks.Rebalance(err == C.EOS_RD_ERR_ASSIGN_PARTITIONS, goPartitions(parts))
	}
}

//export eosError
func eosError(handle C.uintptr_t, err C.int, reason *C.char) {
	c := cgo.Handle(handle).Value().(*client)
	if c.hooks.Error != nil {
		c.hooks.Error(kafka.NewError(kafka.ErrorCode(err), C.GoString(reason), err == C.EOS_RD_ERR_FATAL))
	}
}

//export eosStats
func eosStats(handle C.uintptr_t, json *C.char, n C.size_t) {
	c := cgo.Handle(handle).Value().(*client)
	if c.hooks.Stats != nil {
		c.hooks.Stats(C.GoBytes(unsafe.Pointer(json), C.int(n)))
	}
}

//export eosLog
func eosLog(handle C.uintptr_t, level C.int, facility, message *C.char) {
	c := cgo.Handle(handle).Value().(*client)
	if c.hooks.Log != nil {
		c.hooks.Log(kafka.LogEvent{Name: c.name, Tag: C.GoString(facility), Message: C.GoString(message), Level: int(level)})
	}
}

// ms converts a timeout for librdkafka: -1 (wait as long as librdkafka allows) stays, anything else is rounded
// up to whole milliseconds so that a short positive timeout does not become "do not wait".
func ms(d int64) C.int {
	if d < 0 {
		return -1
	}
	return C.int((d + 999_999) / 1_000_000)
}
