// Command dedupe-restore measures how fast a de-duplication store is restored from its changelog: it writes a
// changelog of N identities (default 1,000,000) to a single-broker Kafka in committed transactions, then restores
// one store from it through the processor's own read_committed restore path, and prints the time, the rate and
// the heap the store takes per key. `make dedupe-restore` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/eosproc/eosproc/dedupe"
	"github.com/eosproc/eosproc/internal/kafkatest"
	"github.com/eosproc/eosproc/testcontainers"
)

func main() {
	keys := flag.Int("keys", 1_000_000, "identities in the changelog")
	flag.Parse()
	tclog.SetDefault(tclog.NewNoopLogger())
	if err := run(context.Background(), *keys); err != nil {
		fmt.Fprintln(os.Stderr, "dedupe-restore:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, keys int) error {
	cluster, err := testcontainers.Start(ctx, testcontainers.Options{})
	if err != nil {
		return err
	}
	defer cluster.Terminate(context.WithoutCancel(ctx))
	const topic = "restore-bench-changelog"
	if err := cluster.CreateTopic(ctx, topic, 1, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
		return err
	}

	started := time.Now()
	p, err := kafkatest.NewProducer(ctx, cluster.BootstrapServers(), "restore-bench")
	if err != nil {
		return err
	}
	ts := time.Now()
	topicName := topic
	const chunk = 50_000
	for from := 0; from < keys; from += chunk {
		msgs := make([]*kafka.Message, min(chunk, keys-from))
		for i := range msgs {
			msgs[i] = &kafka.Message{
				TopicPartition: kafka.TopicPartition{Topic: &topicName, Partition: 0},
				Key:            fmt.Appendf(nil, "order-%012d", from+i), // an 18-byte identity
				Value:          dedupe.EncodeTimestamp(ts.Add(time.Duration(from+i) * time.Millisecond)),
			}
		}
		if err := p.Send(ctx, msgs, true); err != nil {
			return err
		}
	}
	p.Close()
	fmt.Printf("changelog: %d identities written in %s\n", keys, time.Since(started).Round(time.Millisecond))

	store, err := dedupe.NewStore(dedupe.Config{Window: 365 * 24 * time.Hour, MaxEntries: keys})
	if err != nil {
		return err
	}
	before := heapInUse()
	restorer := &dedupe.KafkaRestorer{Config: kafka.ConfigMap{"bootstrap.servers": cluster.BootstrapServers()}}
	started = time.Now()
	n, err := restorer.Restore(ctx, topic, 0, store.RestoreRecord)
	if err != nil {
		return err
	}
	took := time.Since(started)
	heap := heapInUse() - before
	if store.Len() != keys || n != keys {
		return fmt.Errorf("restored %d records into %d entries, want %d", n, store.Len(), keys)
	}
	fmt.Printf("restore: %d keys in %s = %.0f keys/s; store heap %.0f bytes/key\n",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), float64(heap)/float64(keys))
	runtime.KeepAlive(store)
	return nil
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}
