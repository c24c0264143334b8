package testcontainers_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/internal/kafkatest"
	"github.com/eosproc/eosproc/testcontainers"
)

func records(topic string, partition int32, from, n int) []*kafka.Message {
	msgs := make([]*kafka.Message, n)
	for i := range msgs {
		msgs[i] = &kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: partition},
			Key:            []byte(fmt.Sprint(from + i)),
			Value:          []byte(fmt.Sprintf("value-%d", from+i)),
		}
	}
	return msgs
}

// values returns the values read from one partition, in order.
func values(msgs []*kafka.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Value)
	}
	return out
}

func wantValues(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("value-%d", from+i)
	}
	return out
}

// TestLeaderKillKeepsTransactionsFlowing is the harness's own proof on the 3-node cluster: committed
// transactions are visible to read_committed readers and aborted ones are not; after the partition leader is
// SIGKILLed a new leader takes over and transactions go on; the killed broker restarts at its address and
// rejoins the ISR.
func TestLeaderKillKeepsTransactionsFlowing(t *testing.T) {
	cluster := testcontainers.StartForTest(t, testcontainers.Options{Brokers: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	const topic = "harness"
	if err := cluster.CreateTopic(ctx, topic, 3, 3, nil); err != nil {
		t.Fatal(err)
	}
	before, err := cluster.Partition(ctx, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before.Replicas, []int{1, 2, 3}) || !slices.Equal(before.ISR, []int{1, 2, 3}) {
		t.Fatalf("partition 0: replicas %v, ISR %v; want all three brokers in both", before.Replicas, before.ISR)
	}

	producer, err := kafkatest.NewProducer(ctx, cluster.BootstrapServers(), "harness-test")
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if err := producer.Send(ctx, records(topic, 0, 0, 500), true); err != nil {
		t.Fatal(err)
	}
	if err := producer.Send(ctx, records(topic, 0, 1_000_000, 100), false); err != nil {
		t.Fatal(err)
	}
	// A commit returns once the coordinator has logged it; the markers reach the partition afterwards (later still
	// when its leader has just moved), and ReadCommitted reads only to the last stable offset.
	if err := kafkatest.WaitSettled(ctx, cluster.BootstrapServers(), []string{topic}); err != nil {
		t.Fatal(err)
	}
	got, err := kafkatest.ReadCommitted(ctx, cluster.BootstrapServers(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(values(got[0]), wantValues(0, 500)) {
		t.Fatalf("read_committed before the kill: %d records, want the 500 committed ones in order and none of the 100 aborted", len(got[0]))
	}

	leader := before.Leader
	t.Logf("SIGKILL leader %d of %s[0]", leader, topic)
	if err := cluster.KillBroker(ctx, leader); err != nil {
		t.Fatal(err)
	}
	err = testcontainers.WaitFor(ctx, "a new leader", func(ctx context.Context) (bool, error) {
		p, err := cluster.Partition(ctx, topic, 0)
		return err == nil && p.Leader >= 0 && p.Leader != leader, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := producer.Send(ctx, records(topic, 0, 500, 500), true); err != nil {
		t.Fatalf("transaction after the leader was killed: %v", err)
	}
	if err := kafkatest.WaitSettled(ctx, cluster.BootstrapServers(), []string{topic}); err != nil {
		t.Fatal(err)
	}
	got, err = kafkatest.ReadCommitted(ctx, cluster.BootstrapServers(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(values(got[0]), wantValues(0, 1000)) {
		t.Fatalf("read_committed after the kill: %d records, want 1000 in order", len(got[0]))
	}

	if err := cluster.StartBroker(ctx, leader); err != nil {
		t.Fatal(err)
	}
	err = testcontainers.WaitFor(ctx, fmt.Sprintf("broker %d back in the ISR", leader), func(ctx context.Context) (bool, error) {
		p, err := cluster.Partition(ctx, topic, 0)
		return err == nil && slices.Contains(p.ISR, leader), err
	})
	if err != nil {
		t.Fatal(err)
	}
}
