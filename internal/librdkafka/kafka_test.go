package librdkafka_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eosproc/eosproc/internal/kafkatest"
	"github.com/eosproc/eosproc/internal/librdkafka"
	"github.com/eosproc/eosproc/stream"
	"github.com/eosproc/eosproc/testcontainers"
)

// Where the producer places records on a real broker: keyless records in runs of one produce request, each on
// the next partition; keyed records where librdkafka's own partitioner puts them.
func TestProducerPlacementOnKafka(t *testing.T) {
	cluster := testcontainers.StartForTest(t, testcontainers.Options{Brokers: 1})
	bootstrap := cluster.BootstrapServers()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const partitions = 4
	// produce sends recs to a new topic with a producer of these extra properties, waits for every delivery,
	// and returns the topic's records per partition, in offset order.
	produce := func(t *testing.T, topic string, props map[string]string, recs []stream.Record) map[int32][]string {
		t.Helper()
		if err := cluster.CreateTopic(ctx, topic, partitions, 1, nil); err != nil {
			t.Fatal(err)
		}
		all := map[string]string{"bootstrap.servers": bootstrap, "enable.idempotence": "true"}
		for k, v := range props {
			all[k] = v
		}
		p, err := librdkafka.NewProducer(all, librdkafka.Hooks{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		// Records produced before librdkafka knows the topic's partitions wait unassigned, and are all placed
		// once it learns them (by the run current then): one delivered record first makes the topic known.
		send := func(recs []stream.Record) {
			t.Helper()
			if n, err := p.Produce(recs, topic, false); err != nil || n != len(recs) {
				t.Fatalf("Produce = %d, %v; want %d", n, err, len(recs))
			}
			for p.Pending() > 0 && ctx.Err() == nil {
				_ = p.Flush(100 * time.Millisecond)
			}
			if err := p.DeliveryError(); err != nil || ctx.Err() != nil {
				t.Fatalf("delivery: %v, %v", err, ctx.Err())
			}
		}
		send([]stream.Record{{Key: []byte("warm-up"), Value: []byte("warm-up")}})
		send(recs)
		got, err := kafkatest.ReadCommitted(ctx, bootstrap, topic)
		if err != nil {
			t.Fatal(err)
		}
		values := map[int32][]string{}
		for part, msgs := range got {
			for _, m := range msgs {
				if string(m.Key) != "warm-up" {
					values[part] = append(values[part], string(m.Value))
				}
			}
		}
		return values
	}
	keyless := func(n, size int) []stream.Record {
		recs := make([]stream.Record, n)
		for i := range recs {
			v := strconv.Itoa(i)
			recs[i].Value = []byte(v + strings.Repeat(".", size-len(v)))
			if i%2 == 1 {
				recs[i].Key = []byte{} // an empty key is no key to librdkafka's default partitioner
			}
		}
		return recs
	}

	// A record of 100 bytes takes 136 in librdkafka's reckoning (36 bytes of worst-case overhead); 1,024 bytes
	// are left for the request's own header.
	for _, c := range []struct {
		name  string
		props map[string]string
		run   int
	}{
		{"RunsEndAtBatchNumMessages", map[string]string{"batch.num.messages": "500"}, 500},
		{"RunsEndAtBatchSize", map[string]string{"batch.size": strconv.Itoa(1024 + 100*136)}, 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			const records = 6000
			got := produce(t, strings.ToLower(c.name), c.props, keyless(records, 100))
			partitionOf := make([]int32, records)
			total := 0
			for part, values := range got {
				for _, v := range values {
					i, err := strconv.Atoi(strings.TrimRight(v, "."))
					if err != nil {
						t.Fatalf("unexpected value %q", v)
					}
					partitionOf[i] = part
					total++
				}
			}
			if total != records {
				t.Fatalf("read %d records, want %d", total, records)
			}
			for i := range records {
				run, first := i/c.run, i-i%c.run
				want := (partitionOf[0] + int32(run)) % partitions
				if partitionOf[i] != want {
					t.Fatalf("record %d (run %d, which starts at record %d on partition %d) is on partition %d, "+
						"want %d: runs of %d records on each partition in turn",
						i, run, first, partitionOf[first], partitionOf[i], want, c.run)
				}
			}
			for part := range int32(partitions) {
				if len(got[part]) == 0 {
					t.Errorf("partition %d got no records", part)
				}
			}
		})
	}

	t.Run("KeyedRecordsGoWhereLibrdkafkasPartitionerPutsThem", func(t *testing.T) {
		var recs []stream.Record
		for i := range 400 {
			recs = append(recs, stream.Record{Key: []byte(fmt.Sprintf("key-%d", i%40)), Value: []byte(strconv.Itoa(i))})
		}
		// Choosing the sticky interval leaves every placement to librdkafka.
		want := keyPartitions(t, produce(t, "keyed-librdkafka", map[string]string{"sticky.partitioning.linger.ms": "10"}, recs), recs)
		got := keyPartitions(t, produce(t, "keyed-runs", nil, recs), recs)
		for key, p := range want {
			if got[key] != p {
				t.Errorf("key %q on partition %d, librdkafka's partitioner puts it on %d", key, got[key], p)
			}
		}
	})
}

// keyPartitions maps each record's key to the one partition its records are on.
func keyPartitions(t *testing.T, got map[int32][]string, recs []stream.Record) map[string]int32 {
	t.Helper()
	out := map[string]int32{}
	for part, values := range got {
		for _, v := range values {
			i, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("unexpected value %q", v)
			}
			key := string(recs[i].Key)
			if p, ok := out[key]; ok && p != part {
				t.Fatalf("key %q on partitions %d and %d", key, p, part)
			}
			out[key] = part
		}
	}
	if len(out) != 40 {
		t.Fatalf("read %d keys, want 40", len(out))
	}
	return out
}
