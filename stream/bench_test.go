package stream

import (
	"context"
	"testing"
	"time"
)

// BenchmarkIdentity: what the default transform costs per record.
func BenchmarkIdentity(b *testing.B) {
	in := Record{Topic: "bench-in-100", Partition: 3, Offset: 1234567, Key: []byte("key-1234567"), Value: make([]byte, 100),
		Timestamp: time.Now()}
	ctx := context.Background()
	b.ReportAllocs()
	for range b.N {
		if _, err := Identity(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}
