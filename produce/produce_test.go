package produce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/internal/rdkafka"
	"github.com/eosproc/eosproc/stream"
)

func TestClassification(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{"fatal flag", kafka.NewError(kafka.ErrUnknown, "boom", true), Fatal},
		{"producer fenced", kafka.NewError(kafka.ErrProducerFenced, "fenced", false), Fatal},
		{"local fenced", kafka.NewError(kafka.ErrFenced, "fenced", false), Fatal},
		{"old epoch", kafka.NewError(kafka.ErrInvalidProducerEpoch, "epoch", false), Fatal},
		{"unflagged client error is unclassified", kafka.NewError(kafka.ErrTimedOut, "timed out", false), Fatal},
		{"not a client error", errors.New("surprise"), Fatal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClassOf(wrap("op", tt.err)); got != tt.want {
				t.Errorf("class = %v, want %v", got, tt.want)
			}
		})
	}
	if got := ClassOf(errors.New("made elsewhere")); got != Fatal {
		t.Errorf("foreign error class = %v, want fatal", got)
	}
	if got := ClassOf(&Error{Op: "x", Class: Retriable, Err: io.EOF}); got != Retriable {
		t.Errorf("class survives wrapping? got %v", got)
	}
}

func TestErrorSaysWhatWasBeingDone(t *testing.T) {
	err := wrap(`send offsets for group "g" (3 partitions)`, kafka.NewError(kafka.ErrProducerFenced, "fenced", false))
	if !strings.HasPrefix(err.Error(), `send offsets for group "g" (3 partitions): `) {
		t.Errorf("error %q does not start with the operation", err)
	}
	var ke kafka.Error
	if !errors.As(err, &ke) || ke.Code() != kafka.ErrProducerFenced {
		t.Errorf("client error not reachable with errors.As: %v", err)
	}
}

// unreachable returns a non-transactional producer whose broker does not exist (nothing listens on port 1), so
// every delivery fails once its message timeout passes.
func unreachable(t *testing.T) *Producer {
	t.Helper()
	p, err := New(Config{Brokers: "127.0.0.1:1", MessageTimeout: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestFailedDeliveryMakesTheBatchAbortable(t *testing.T) {
	p := unreachable(t)
	if err := p.Begin(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Produce(context.Background(), []stream.Record{{Topic: "out", Value: []byte("v")}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := p.Flush(ctx)
	if ClassOf(err) != Abortable || !strings.Contains(err.Error(), "deliver record to out/") {
		t.Fatalf("Flush = %v (%v), want an abortable delivery failure naming the topic", err, ClassOf(err))
	}
	if err := p.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := p.DeliveryError(); err != nil {
		t.Errorf("a new batch starts with the old failure: %v", err)
	}
}

// A record batch the broker refuses as too large would be refused on every redo: fatal, saying why; any other
// failed delivery is abortable.
func TestDeliveryFailureClasses(t *testing.T) {
	for _, tt := range []struct {
		code kafka.ErrorCode
		want Class
	}{
		{kafka.ErrMsgSizeTooLarge, Fatal},
		{kafka.ErrRecordListTooLarge, Fatal},
		{kafka.ErrMsgTimedOut, Abortable},
		{kafka.ErrNotLeaderForPartition, Abortable},
	} {
		err := deliveryFailure("commit transaction", fmt.Errorf("deliver record to out/0: %w", kafka.NewError(tt.code, tt.code.String(), false)))
		if ClassOf(err) != tt.want {
			t.Errorf("%v: class %v, want %v", tt.code, ClassOf(err), tt.want)
		}
		if tt.want == Fatal && !strings.Contains(err.Error(), "max.message.bytes was lowered after the processor started") {
			t.Errorf("%v: %v does not say what happened", tt.code, err)
		}
	}
}

func TestLateFailureOfAnEarlierBatchIsNotBlamedOnTheNext(t *testing.T) {
	p := unreachable(t)
	if err := p.Begin(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Produce(context.Background(), []stream.Record{{Topic: "out", Value: []byte("v")}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Begin(); err != nil { // the first batch was given up on (aborted)
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Errorf("Flush = %v, want nil: the failed record belonged to the previous batch", err)
	}
}

func TestFlushGivesUpWithTheContext(t *testing.T) {
	p, err := New(Config{Brokers: "127.0.0.1:1", MessageTimeout: time.Minute, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_ = p.Begin()
	if _, err := p.Produce(context.Background(), []stream.Record{{Topic: "out"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Flush(ctx); ClassOf(err) != Abortable {
		t.Errorf("Flush = %v, want abortable once the context ends", err)
	}
}

func TestOwnedPropertiesCannotBeOverridden(t *testing.T) {
	_, err := New(Config{Brokers: "127.0.0.1:1", TransactionalID: "t", TransactionTimeout: time.Minute,
		Properties: map[string]string{"enable.idempotence": "false"}})
	if err == nil || !strings.Contains(err.Error(), `"enable.idempotence"`) {
		t.Errorf("New = %v, want a refusal naming enable.idempotence", err)
	}
}

func TestGuardGivesUpOnACallThatNeverReturns(t *testing.T) {
	p := &Producer{stallBound: 50 * time.Millisecond, log: slog.New(slog.NewTextHandler(io.Discard, nil))}

	retriable := kafka.NewError(kafka.ErrTimedOut, "timed out", false)
	if err := p.guard(context.Background(), "send offsets", func() error { return wrap("inner", retriable) }); p.wedged.Load() || err == nil {
		t.Fatalf("a call that returns: err %v, wedged %v; want its own error and not wedged", err, p.wedged.Load())
	}

	release := make(chan struct{})
	defer close(release)
	start := time.Now()
	err := p.guard(context.Background(), "commit transaction", func() error { <-release; return nil })
	if waited := time.Since(start); waited < p.stallBound || waited > p.stallBound+2*time.Second {
		t.Errorf("guard returned after %s, want about its bound %s", waited, p.stallBound)
	}
	if ClassOf(err) != Fatal || !errors.Is(err, ErrWedged) || !strings.Contains(err.Error(), "commit transaction") {
		t.Errorf("err = %v (class %v), want a fatal wedged error naming the call", err, ClassOf(err))
	}
	if !p.wedged.Load() {
		t.Error("producer not marked wedged")
	}
	// With no client behind it, Close would panic if it tried to close librdkafka instead of leaving it.
	p.Close()
}

// withMaxBytes returns a producer, its transaction begun, whose message.max.bytes is 2000 and whose broker does
// not exist: records are refused or queued, never sent.
func withMaxBytes(t *testing.T) *Producer {
	t.Helper()
	p, err := New(Config{Brokers: "127.0.0.1:1", MessageTimeout: time.Minute, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Properties: map[string]string{"message.max.bytes": "2000"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if err := p.Begin(); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRecordTooLargeIsRefusedForItself(t *testing.T) {
	p := withMaxBytes(t)
	refused, err := p.Produce(context.Background(), []stream.Record{{Topic: "out", Value: make([]byte, 5000)}})
	if len(refused) != 1 || refused[0] != 0 || ClassOf(err) != Abortable || !errors.Is(err, ErrRecordRefused) || !strings.Contains(err.Error(), "produce to out") {
		t.Fatalf("Produce of a record over message.max.bytes = %v (class %v), want an abortable ErrRecordRefused naming the topic", err, ClassOf(err))
	}
	if _, err := p.Produce(context.Background(), []stream.Record{{Topic: "out", Value: make([]byte, 100)}}); err != nil {
		t.Errorf("a record within the limit after a refused one: %v", err)
	}
	if p.MaxRecordBytes() != 2000 {
		t.Errorf("MaxRecordBytes = %d, want the configured 2000", p.MaxRecordBytes())
	}
	// EncodedSize must never be below what librdkafka checks, or the loop's check would let a record through
	// that librdkafka then refuses: around the limit, every refused record must measure above it.
	headers := []stream.Header{{Key: "a", Value: []byte("1")}, {Key: "source", Value: []byte("in/0/12345")}}
	refusals := 0
	for size := 1850; size <= 2000; size++ {
		r := stream.Record{Topic: "out", Key: []byte("key"), Value: make([]byte, size), Headers: headers}
		if _, err := p.Produce(context.Background(), []stream.Record{r}); errors.Is(err, ErrRecordRefused) {
			refusals++
			if EncodedSize(r) <= p.MaxRecordBytes() {
				t.Fatalf("librdkafka refused a record of value size %d whose EncodedSize %d is within the limit", size, EncodedSize(r))
			}
		}
	}
	if refusals == 0 {
		t.Fatal("no record refused around the limit: the test does not test anything")
	}
}

func TestRefusedRecordsDoNotStopTheOthersInTheBatch(t *testing.T) {
	p := withMaxBytes(t)
	small, large := make([]byte, 10), make([]byte, 5000)
	batch := []stream.Record{{Topic: "out", Value: small}, {Topic: "out", Value: large}, {Topic: "out", Value: small},
		{Topic: "out", Value: large}, {Topic: "out", Value: small}}
	refused, err := p.Produce(context.Background(), batch)
	if !errors.Is(err, ErrRecordRefused) || len(refused) != 2 || refused[0] != 1 || refused[1] != 3 {
		t.Fatalf("Produce = %v, %v; want records 1 and 3 refused", refused, err)
	}
	if n := p.k.Pending(); n != 3 {
		t.Errorf("%d records queued, want the 3 within the limit", n)
	}
}

func TestGuardGivesUpWhenItsCallerDoes(t *testing.T) {
	p := &Producer{stallBound: time.Hour, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A call that returns within the grace is not taken for a stuck one, even though its caller gave up.
	if err := p.guard(ctx, "send offsets", func() error { time.Sleep(10 * time.Millisecond); return nil }); err != nil || p.wedged.Load() {
		t.Fatalf("quick call after cancel: err %v, wedged %v; want its own result", err, p.wedged.Load())
	}
	release := make(chan struct{})
	defer close(release)
	start := time.Now()
	err := p.guard(ctx, "send offsets", func() error { <-release; return nil })
	if waited := time.Since(start); waited > attemptTimeout+2*time.Second {
		t.Errorf("guard returned %s after its caller gave up, want within the %s grace", waited, attemptTimeout)
	}
	if !errors.Is(err, ErrWedged) || ClassOf(err) != Fatal || !p.wedged.Load() {
		t.Errorf("err = %v, wedged %v; want fatal ErrWedged", err, p.wedged.Load())
	}
}

func TestOwnedPropertiesListWhatNewSets(t *testing.T) {
	set := ownedProperties(Config{Brokers: "b:9092", TransactionalID: "t", TransactionTimeout: time.Minute, MessageTimeout: time.Second})
	unlisted, unset := rdkafka.OwnedMismatch(set, OwnedProperties, "metadata.broker.list", "request.required.acks",
		"queue.buffering.max.ms", "delivery.timeout.ms")
	if len(unlisted)+len(unset) > 0 {
		t.Errorf("New sets %v without listing them in OwnedProperties, which lists %v that New does not set", unlisted, unset)
	}
	if _, err := New(Config{Brokers: "127.0.0.1:1", Properties: map[string]string{"queue.buffering.max.ms": "50"}}); err == nil ||
		!strings.Contains(err.Error(), `"queue.buffering.max.ms"`) {
		t.Errorf("New with an alias of linger.ms = %v, want a refusal naming it", err)
	}
}

// A partition the producer's metadata does not know yet (just added) redoes the batch instead of ending the
// process.
func TestUnknownPartitionIsAbortable(t *testing.T) {
	p, err := New(Config{Brokers: "127.0.0.1:1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err = p.produceError(context.Background(), "in-dedupe", kafka.NewError(kafka.ErrUnknownPartition, "Local: Unknown partition", false))
	if ClassOf(err) != Abortable || !strings.Contains(err.Error(), "not yet in the producer's metadata") {
		t.Errorf("produceError = %v (%v), want an abortable error saying the partition is not known yet", err, ClassOf(err))
	}
}

func TestDefaultsGiveWayToTheUsersProperties(t *testing.T) {
	for _, tc := range []struct {
		user map[string]string
		want map[string]string // "" : not set, librdkafka's default applies
	}{
		{nil, map[string]string{rdkafka.SparseConnections: "false", "retry.backoff.ms": "20", "retry.backoff.max.ms": "100",
			"queue.buffering.max.messages": "20000"}},
		{map[string]string{"queue.buffering.max.messages": "100000"}, map[string]string{"queue.buffering.max.messages": "100000"}},
		{map[string]string{rdkafka.SparseConnections: "true"}, map[string]string{rdkafka.SparseConnections: "true"}},
		{map[string]string{"retry.backoff.max.ms": "500"}, map[string]string{"retry.backoff.ms": "20", "retry.backoff.max.ms": "500"}},
		// A backoff above our bound would be refused with it: the user's backoff gets librdkafka's bound.
		{map[string]string{"retry.backoff.ms": "200"}, map[string]string{"retry.backoff.ms": "200", "retry.backoff.max.ms": ""}},
	} {
		props, err := clientProperties(Config{Brokers: "b:9092", Properties: tc.user})
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range tc.want {
			if got := props[name]; got != want {
				t.Errorf("with user properties %v: %s = %q, want %q", tc.user, name, got, want)
			}
		}
	}
}
