package librdkafka

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/stream"
)

func unreachableProducer(t *testing.T, props map[string]string) (*Producer, *logs) {
	t.Helper()
	l := &logs{}
	all := map[string]string{"bootstrap.servers": "127.0.0.1:1", "enable.idempotence": "true", "message.timeout.ms": "60000"}
	for k, v := range props {
		all[k] = v
	}
	p, err := NewProducer(all, Hooks{Log: l.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, l
}

type logs struct {
	mu     sync.Mutex
	events []kafka.LogEvent
}

func (l *logs) add(e kafka.LogEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func TestUnknownPropertyIsRefusedWithItsName(t *testing.T) {
	_, err := NewProducer(map[string]string{"no.such.property": "1"}, Hooks{})
	if err == nil || !contains(err.Error(), "no.such.property") {
		t.Fatalf("err = %v, want one naming the property", err)
	}
	_, err = NewConsumer(map[string]string{"group.id": "g", "fetch.wait.max.ms": "-5"}, Hooks{})
	if err == nil || !contains(err.Error(), "fetch.wait.max.ms") {
		t.Fatalf("err = %v, want one naming the property", err)
	}
}

func TestProduceQueuesEveryRecordAndCountsThemPending(t *testing.T) {
	p, _ := unreachableProducer(t, nil)
	recs := []stream.Record{
		{Topic: "a", Key: []byte("k"), Value: []byte("v"), Headers: []stream.Header{{Key: "h", Value: []byte("x")}, {Key: "nil"}}},
		{Value: []byte("to the default topic"), Timestamp: time.UnixMilli(1700000000000)},
		{Topic: "b"},
	}
	n, err := p.Produce(recs, "out", false)
	if err != nil || n != len(recs) {
		t.Fatalf("Produce = %d, %v; want %d, nil", n, err, len(recs))
	}
	if got := p.Pending(); got != int64(len(recs)) {
		t.Errorf("Pending = %d, want %d", got, len(recs))
	}
	if err := p.DeliveryError(); err != nil {
		t.Errorf("DeliveryError before any report = %v", err)
	}
}

func TestRecordAboveMessageMaxBytesIsRefusedAtItsIndex(t *testing.T) {
	p, _ := unreachableProducer(t, map[string]string{"message.max.bytes": "1000"})
	recs := []stream.Record{{Value: make([]byte, 10)}, {Value: make([]byte, 5000)}, {Value: make([]byte, 10)}}
	n, err := p.Produce(recs, "out", false)
	var e *Error
	if n != 1 || !errors.As(err, &e) || e.Code() != kafka.ErrMsgSizeTooLarge {
		t.Fatalf("Produce = %d, %v; want 1 and MSG_SIZE_TOO_LARGE", n, err)
	}
	if got := p.Pending(); got != 1 {
		t.Errorf("Pending = %d, want 1 (the refused record is not counted)", got)
	}
}

func TestFailedDeliveryIsReportedForItsEpochOnly(t *testing.T) {
	p, _ := unreachableProducer(t, map[string]string{"message.timeout.ms": "200", "enable.idempotence": "false"})
	p.BeginEpoch(1)
	if _, err := p.Produce([]stream.Record{{Value: []byte("x")}}, "out", false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for p.Pending() > 0 && time.Now().Before(deadline) {
		_ = p.Flush(100 * time.Millisecond)
	}
	err := p.DeliveryError()
	var e *Error
	if !errors.As(err, &e) || e.Code() != kafka.ErrMsgTimedOut || !contains(err.Error(), "out/") {
		t.Fatalf("DeliveryError = %v, want a timed-out delivery to out", err)
	}

	// A report of epoch 2's record arrives after epoch 3 began: it is not epoch 3's failure.
	p.BeginEpoch(2)
	if _, err := p.Produce([]stream.Record{{Value: []byte("y")}}, "out", false); err != nil {
		t.Fatal(err)
	}
	p.BeginEpoch(3)
	for p.Pending() > 0 && time.Now().Before(deadline) {
		_ = p.Flush(100 * time.Millisecond)
	}
	if p.Pending() != 0 {
		t.Fatal("reports not served in time")
	}
	if err := p.DeliveryError(); err != nil {
		t.Errorf("DeliveryError of epoch 3 = %v, want nil", err)
	}
}

// A full queue has room again once delivery reports come in (here: the records time out undelivered): the wait
// ends on the reports, not on its timeout, and without them it ends on its timeout.
func TestWaitForRoomEndsWhenRecordsAreReported(t *testing.T) {
	p, _ := unreachableProducer(t, map[string]string{"queue.buffering.max.messages": "8", "message.timeout.ms": "300", "enable.idempotence": "false"})
	recs := make([]stream.Record, 20)
	n, err := p.Produce(recs, "out", false)
	var e *Error
	if n != 8 || !errors.As(err, &e) || e.Code() != kafka.ErrQueueFull {
		t.Fatalf("Produce = %d, %v; want 8 and QUEUE_FULL", n, err)
	}
	if p.WaitForRoom(10 * time.Millisecond) {
		t.Fatal("WaitForRoom reported room before any record was reported")
	}
	start := time.Now()
	if !p.WaitForRoom(30 * time.Second) {
		t.Fatalf("WaitForRoom = false after %s, %d records pending", time.Since(start), p.Pending())
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Errorf("WaitForRoom took %s: it waited for its timeout, not for the reports", waited)
	}
	// Room means a quarter of the 8 pending records reported. (librdkafka counts a record out of its queue only
	// once its report has been served, a moment later, so a produce right now may still find the queue full.)
	if pending := p.Pending(); pending > 6 {
		t.Errorf("WaitForRoom = true with %d records pending, want at most 6 of the 8", pending)
	}
}

func TestConsumeWithoutBrokersWaitsItsTimeout(t *testing.T) {
	c, err := NewConsumer(map[string]string{"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Subscribe([]string{"in"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	recs, errs, err := c.Consume(200*time.Millisecond, 100, nil)
	if err != nil || len(recs) != 0 || len(errs) != 0 {
		t.Fatalf("Consume = %v, %v, %v; want nothing", recs, errs, err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("Consume returned after %s, before its timeout", d)
	}
	md, err := c.GroupMetadata()
	if err != nil {
		t.Fatal(err)
	}
	if md.MemberID() != "" || md.Generation() >= 0 {
		t.Errorf("metadata outside the group: member %q generation %d, want empty and negative", md.MemberID(), md.Generation())
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestKeylessRunsFollowTheRequestLimitsUnlessPlacementIsChosen(t *testing.T) {
	for _, c := range []struct {
		name  string
		props map[string]string
		want  runLimits
	}{
		{"Defaults", map[string]string{"acks": "all"}, runLimits{bytes: 1_000_000 - requestHeaderBytes, records: 10_000}},
		{"BatchSize", map[string]string{"batch.size": "50000", "batch.num.messages": "20"}, runLimits{bytes: 50_000 - requestHeaderBytes, records: 20}},
		{"MessageMaxBytesBelowBatchSize", map[string]string{"message.max.bytes": "20000"}, runLimits{bytes: 20_000 - requestHeaderBytes, records: 10_000}},
		{"PartitionerChosen", map[string]string{"partitioner": "murmur2_random"}, runLimits{}},
		{"StickyIntervalChosen", map[string]string{"sticky.partitioning.linger.ms": "10"}, runLimits{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			runs, props, err := keylessRuns(c.props)
			if err != nil || runs != c.want {
				t.Fatalf("keylessRuns = %+v, %v; want %+v", runs, err, c.want)
			}
			_, inProps := props["sticky.partitioning.linger.ms"]
			_, inOriginal := c.props["sticky.partitioning.linger.ms"]
			switch {
			case runs.records > 0 && (props["sticky.partitioning.linger.ms"] != "0" || inOriginal):
				t.Errorf("properties %v (given %v): want sticky.partitioning.linger.ms=0 added to a copy", props, c.props)
			case runs.records == 0 && (len(props) != len(c.props) || inProps != inOriginal):
				t.Errorf("properties %v, want %v unchanged", props, c.props)
			}
		})
	}
	_, _, err := keylessRuns(map[string]string{"batch.num.messages": "many"})
	if err == nil || !contains(err.Error(), "batch.num.messages") {
		t.Errorf("keylessRuns with batch.num.messages=many: %v, want an error naming it", err)
	}
}
