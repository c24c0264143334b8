package consume

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/internal/rdkafka"
	"github.com/eosproc/eosproc/stream"
)

func TestRevokedPartitionsRecordsAreDropped(t *testing.T) {
	recs := []stream.Record{
		{Topic: "a", Partition: 0, Offset: 1}, {Topic: "a", Partition: 1, Offset: 1},
		{Topic: "a", Partition: 0, Offset: 2}, {Topic: "b", Partition: 0, Offset: 9},
	}
	got := dropPartitions(recs, map[stream.TopicPartition]bool{{Topic: "a", Partition: 0}: true})
	if len(got) != 2 || got[0].Partition != 1 || got[1].Topic != "b" {
		t.Errorf("kept %+v, want a/1 and b/0 in their order", got)
	}
}

func unreachable(t *testing.T, interval time.Duration) *Consumer {
	t.Helper()
	c, err := New(Config{Brokers: "127.0.0.1:1", GroupID: "g", Topics: []string{"in"}, BatchInterval: interval,
		MaxBatchRecords: 10, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestAssembleEndsWithTheIntervalWithoutBrokers(t *testing.T) {
	c := unreachable(t, 300*time.Millisecond)
	start := time.Now()
	batch, err := c.Assemble(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(batch) != 0 {
		t.Errorf("batch = %v, want empty", batch)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("Assemble took %s, want about the interval", d)
	}
	if err := c.Rewind(context.Background()); err != nil {
		t.Errorf("Rewind with nothing consumed: %v", err)
	}
	if len(c.Assigned()) != 0 || len(c.Lags()) != 0 {
		t.Errorf("unexpected assignment without a broker")
	}
}

func TestAssembleReturnsWhenTheContextEnds(t *testing.T) {
	c := unreachable(t, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if _, err := c.Assemble(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// Far below the minute-long interval it would otherwise wait, and far above what a busy machine adds.
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Assemble took %s after its context ended", d)
	}
}

func TestOwnedPropertiesCannotBeOverridden(t *testing.T) {
	_, err := New(Config{Brokers: "127.0.0.1:1", GroupID: "g", Topics: []string{"in"},
		Properties: map[string]string{"isolation.level": "read_uncommitted"}})
	if err == nil || !strings.Contains(err.Error(), `"isolation.level"`) {
		t.Errorf("New = %v, want a refusal naming isolation.level", err)
	}
}

func TestOutOfRangeResetIsCountedFromTheClientLog(t *testing.T) {
	c := &Consumer{log: slog.New(slog.NewTextHandler(io.Discard, nil)), resetMode: "earliest"}
	c.watchResets(logEvent("OFFSET", 4, "in [0]: offset reset (at offset 8, broker 1) to offset BEGINNING: fetch failed due to requested offset not available on the broker: Broker: Offset out of range"))
	c.watchResets(logEvent("OFFSET", 7, "in [1]: offset reset (at offset INVALID) to BEGINNING: no previously committed offset available"))
	if got := c.OffsetResets(); got != 1 {
		t.Errorf("resets = %d, want 1 (a start without committed offset is not a reset)", got)
	}
}

func logEvent(tag string, level int, msg string) kafka.LogEvent {
	return kafka.LogEvent{Tag: tag, Level: level, Message: msg}
}

func TestFatalLogLineReachesOnFatal(t *testing.T) {
	var got []error
	c := &Consumer{onFatal: func(err error) { got = append(got, err) }}
	c.watchLogs(kafka.LogEvent{Tag: "FAIL", Level: 3, Message: "Connect to ipv4#127.0.0.1:1 failed"})
	c.watchLogs(kafka.LogEvent{Tag: "FATAL", Level: 0, Message: "Fatal error: Broker: Static consumer fenced by other consumer with same group.instance.id"})
	if len(got) != 1 || !strings.Contains(got[0].Error(), "Static consumer fenced") {
		t.Fatalf("OnFatal got %v, want the one fatal line", got)
	}
}

func TestRecordsOfAPartitionRevokedDuringTheCallAreDroppedEvenIfItCameBack(t *testing.T) {
	p0, p1 := stream.TopicPartition{Topic: "in", Partition: 0}, stream.TopicPartition{Topic: "in", Partition: 1}
	c := &Consumer{
		log:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		carry:         map[stream.TopicPartition][]stream.Record{},
		paused:        map[stream.TopicPartition]bool{},
		firstSeen:     map[stream.TopicPartition]int64{},
		assigned:      map[stream.TopicPartition]bool{p0: true, p1: true}, // p0 was revoked and assigned back
		revokedInCall: map[stream.TopicPartition]bool{p0: true},
	}
	recs := []stream.Record{{Topic: "in", Partition: 0, Offset: 7}, {Topic: "in", Partition: 1, Offset: 3}, {Topic: "in", Partition: 0, Offset: 8}}
	budgets := map[stream.TopicPartition]int64{p0: 100, p1: 100}
	if err := c.take(recs, budgets, map[stream.TopicPartition]int64{}, 100); err != nil {
		t.Fatal(err)
	}
	if len(c.pending) != 1 || c.pending[0].TopicPartition() != p1 {
		t.Errorf("pending %+v, want only in/1's record", c.pending)
	}
	if _, ok := c.firstSeen[p0]; ok {
		t.Error("a dropped record set where a rewind of in/0 would go")
	}
}

func TestOwnedPropertiesListWhatNewSets(t *testing.T) {
	set := ownedProperties(Config{Brokers: "b:9092", GroupID: "g", InstanceID: "i"}, "earliest", time.Minute)
	if unlisted, unset := rdkafka.OwnedMismatch(set, OwnedProperties, "metadata.broker.list"); len(unlisted)+len(unset) > 0 {
		t.Errorf("New sets %v without listing them in OwnedProperties, which lists %v that New does not set", unlisted, unset)
	}
}

func TestAnAliasOfAnOwnedPropertyIsRefused(t *testing.T) {
	_, err := New(Config{Brokers: "127.0.0.1:1", GroupID: "g", Topics: []string{"in"},
		Properties: map[string]string{"metadata.broker.list": "elsewhere:9092"}})
	if err == nil || !strings.Contains(err.Error(), `"metadata.broker.list"`) {
		t.Errorf("New = %v, want a refusal naming metadata.broker.list", err)
	}
}

func TestAHeldBatchGoesOnPastItsInterval(t *testing.T) {
	c := unreachable(t, 50*time.Millisecond)
	start := time.Now()
	checks := 0
	c.SetBatchHold(func() bool {
		checks++
		return time.Since(start) < 300*time.Millisecond
	})
	if _, err := c.Assemble(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("Assemble returned after %s while held for 300ms", d)
	}
	if checks < 2 {
		t.Errorf("hold asked %d times, want it asked again while it held", checks)
	}
}

func TestPrefetchIsAQuarterBatchPerPartitionWithinBounds(t *testing.T) {
	for _, tc := range []struct{ maxBatch, want int }{
		{1, 1000},
		{2000, 1000},
		{8000, 2000},
		{DefaultMaxBatchRecords, 5000},
		{50000, 5000},
		{1000000, 5000},
	} {
		if got := prefetchRecords(tc.maxBatch); got != tc.want {
			t.Errorf("prefetchRecords(%d) = %d, want %d", tc.maxBatch, got, tc.want)
		}
	}
}

func TestConnectionsAreEagerUnlessTheUserSetsThem(t *testing.T) {
	for _, tc := range []struct {
		user map[string]string
		want string
	}{
		{nil, "false"},
		{map[string]string{rdkafka.SparseConnections: "true"}, "true"},
	} {
		props, err := clientProperties(Config{Brokers: "b:9092", GroupID: "g", Properties: tc.user}, "earliest", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if got := props[rdkafka.SparseConnections]; got != tc.want {
			t.Errorf("with user properties %v: %s = %q, want %q", tc.user, rdkafka.SparseConnections, got, tc.want)
		}
	}
}
