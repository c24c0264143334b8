package txn

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/eosproc/eosproc/produce"
	"github.com/eosproc/eosproc/stream"
)

// BenchmarkBatchIdentity measures what the loop itself costs per record (transform with stream.Identity, output
// records, offsets, stats), with a consumer that hands out the same batch and a producer that drops records: the
// client library's share is measured by produce's benchmark and bench/processor's profile.
//
//	go test -run '^$' -bench BatchIdentity -benchmem ./txn
func BenchmarkBatchIdentity(b *testing.B) {
	const batchSize = 1000
	in := make([]stream.Record, batchSize)
	value := make([]byte, 100)
	for i := range in {
		in[i] = stream.Record{Topic: "in", Partition: int32(i % 6), Offset: int64(i), Key: []byte("key-" + strconv.Itoa(i)),
			Value: value, Timestamp: time.Now()}
	}
	l := &Loop{
		Consumer:    &repeatConsumer{batch: in},
		Producer:    discardProducer{},
		OutputTopic: "out",
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	l.defaults()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		bt, err := l.assemble(ctx, ctx, ctx)
		if err == nil {
			bt.sent = time.Now()
			err = l.transact(ctx, ctx, bt)
		}
		if err != nil {
			b.Fatal(err)
		}
		l.report(bt)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/record")
}

type repeatConsumer struct{ batch []stream.Record }

func (c *repeatConsumer) Assigned() []stream.TopicPartition     { return nil }
func (c *repeatConsumer) Lags() map[stream.TopicPartition]int64 { return nil }
func (c *repeatConsumer) Batching() (time.Duration, int)        { return time.Second, len(c.batch) }
func (c *repeatConsumer) Assemble(context.Context, map[stream.TopicPartition]int64) ([]stream.Record, error) {
	return c.batch, nil
}
func (c *repeatConsumer) Rewind(context.Context) error                   { return nil }
func (c *repeatConsumer) SetRevokeBarrier(func([]stream.TopicPartition)) {}
func (c *repeatConsumer) SetBatchSink(func([]stream.Record) error)       {}
func (c *repeatConsumer) SetBatchHold(func() bool)                       {}
func (c *repeatConsumer) GroupMetadata() (*produce.GroupMetadata, error) {
	return nil, nil
}
func (c *repeatConsumer) CommitOffsets(map[stream.TopicPartition]int64) error { return nil }
func (c *repeatConsumer) TakeRevoked() []stream.TopicPartition                { return nil }

type discardProducer struct{}

func (discardProducer) InitTransactions(context.Context) error { return nil }
func (discardProducer) Begin() error                           { return nil }
func (discardProducer) Produce(context.Context, []stream.Record) ([]int, error) {
	return nil, nil
}
func (discardProducer) ProduceToPartitions(context.Context, []stream.Record) error { return nil }
func (discardProducer) SendOffsets(context.Context, map[stream.TopicPartition]int64, *produce.GroupMetadata) error {
	return nil
}
func (discardProducer) Commit() error               { return nil }
func (discardProducer) Abort() error                { return nil }
func (discardProducer) Flush(context.Context) error { return nil }
