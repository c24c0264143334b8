package produce

import (
	"context"
	"testing"
	"time"

	"github.com/eosproc/eosproc/stream"
)

// BenchmarkProduce measures producing one output record, in batches of 1000 (our staging of the batch, librdkafka's
// copy of each record and its delivery report), against librdkafka's built-in mock broker, which
// acknowledges without a network or a JVM. The mock is fine for counting allocations; it is never used to test
// exactly-once (it does not honour read_committed).
//
//	go test -run '^$' -bench Produce -benchmem ./produce
func BenchmarkProduce(b *testing.B) {
	p, err := New(Config{Properties: map[string]string{"test.mock.num.brokers": "1", "log_level": "3"}, MessageTimeout: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	r := stream.Record{Topic: "out", Key: []byte("key-123456"), Value: make([]byte, 100), Timestamp: time.Now(),
		Headers: []stream.Header{{Key: stream.SourceHeader, Value: []byte("in/3/123456")}}}
	batch := make([]stream.Record, 1000)
	for i := range batch {
		batch[i] = r
	}
	if err := p.Begin(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += len(batch) {
		if _, err := p.Produce(ctx, batch[:min(len(batch), b.N-done)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatal(err)
	}
}
