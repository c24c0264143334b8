// Package kafkatest holds the plain Kafka clients that tests, the demo and benchmarks use to write input and read
// output: a transactional writer and a read_committed reader that knows when it has read everything.
package kafkatest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Producer writes test input.
type Producer struct {
	p             *kafka.Producer
	transactional bool
}

// NewProducer returns an idempotent producer; with a non-empty transactionalID it is transactional and
// initialized.
func NewProducer(ctx context.Context, bootstrap, transactionalID string) (*Producer, error) {
	cfg := &kafka.ConfigMap{
		"bootstrap.servers":  bootstrap,
		"enable.idempotence": true,
		"linger.ms":          5,
		"log_level":          3,
	}
	if transactionalID != "" {
		_ = cfg.SetKey("transactional.id", transactionalID)
	}
	p, err := kafka.NewProducer(cfg)
	if err != nil {
		return nil, fmt.Errorf("create test producer for %s: %w", bootstrap, err)
	}
	go func() {
		for range p.Events() { // delivery failures surface through Flush's count and the commit's error
		}
	}()
	if transactionalID != "" {
		if err := p.InitTransactions(ctx); err != nil {
			p.Close()
			return nil, fmt.Errorf("init transactions for %q: %w", transactionalID, err)
		}
	}
	return &Producer{p: p, transactional: transactionalID != ""}, nil
}

// Send writes msgs (their TopicPartition says where) and waits until every one is acknowledged. On a
// transactional producer they form one transaction, committed or, with commit false, aborted.
func (p *Producer) Send(ctx context.Context, msgs []*kafka.Message, commit bool) error {
	if p.transactional {
		if err := p.p.BeginTransaction(); err != nil {
			return fmt.Errorf("begin transaction: %w", err)
		}
	}
	delivered := make(chan kafka.Event, len(msgs))
	for _, m := range msgs {
		for {
			err := p.p.Produce(m, delivered)
			if err == nil {
				break
			}
			if kerr, ok := err.(kafka.Error); !ok || kerr.Code() != kafka.ErrQueueFull {
				return fmt.Errorf("produce to %s: %w", m.TopicPartition, err)
			}
			p.p.Flush(100)
		}
	}
	for range msgs {
		select {
		case e := <-delivered:
			if m, ok := e.(*kafka.Message); ok && m.TopicPartition.Error != nil {
				return fmt.Errorf("deliver to %s: %w", m.TopicPartition, m.TopicPartition.Error)
			}
		case <-ctx.Done():
			return fmt.Errorf("wait for deliveries: %w", ctx.Err())
		}
	}
	if !p.transactional {
		return nil
	}
	if commit {
		if err := p.p.CommitTransaction(ctx); err != nil {
			return fmt.Errorf("commit transaction of %d records: %w", len(msgs), err)
		}
		return nil
	}
	if err := p.p.AbortTransaction(ctx); err != nil {
		return fmt.Errorf("abort transaction of %d records: %w", len(msgs), err)
	}
	return nil
}

// Close releases the producer.
func (p *Producer) Close() { p.p.Close() }

// ReadCommitted reads every record of topic visible to a read_committed reader, from the beginning up to the end
// of each partition as it stood when the call began (the last stable offset, as long as no transaction is left
// open), and returns them per partition in offset order. It joins no group and commits nothing.
func ReadCommitted(ctx context.Context, bootstrap, topic string) (map[int32][]*kafka.Message, error) {
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":    bootstrap,
		"group.id":             "kafkatest-reader", // required by librdkafka; unused: partitions are assigned
		"isolation.level":      "read_committed",
		"enable.auto.commit":   false,
		"enable.partition.eof": true,
		"log_level":            3,
	})
	if err != nil {
		return nil, fmt.Errorf("create read_committed reader of %q: %w", topic, err)
	}
	defer c.Close()

	md, err := c.GetMetadata(&topic, false, 10000)
	if err != nil {
		return nil, fmt.Errorf("metadata of %q: %w", topic, err)
	}
	tm, ok := md.Topics[topic]
	if !ok || tm.Error.Code() != kafka.ErrNoError {
		return nil, fmt.Errorf("metadata of %q: %v", topic, tm.Error)
	}
	var assignment []kafka.TopicPartition
	ends := map[int32]int64{}
	for _, p := range tm.Partitions {
		_, high, err := c.QueryWatermarkOffsets(topic, p.ID, 10000)
		if err != nil {
			return nil, fmt.Errorf("watermarks of %s[%d]: %w", topic, p.ID, err)
		}
		ends[p.ID] = high
		assignment = append(assignment, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.OffsetBeginning})
	}
	if err := c.Assign(assignment); err != nil {
		return nil, fmt.Errorf("assign %d partitions of %q: %w", len(assignment), topic, err)
	}

	out := map[int32][]*kafka.Message{}
	done := map[int32]bool{}
	for p, high := range ends {
		if high == 0 {
			done[p] = true
		}
	}
	for len(done) < len(ends) {
		if ctx.Err() != nil {
			return out, fmt.Errorf("read %q to its end: %d of %d partitions done: %w", topic, len(done), len(ends), ctx.Err())
		}
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			if e.TopicPartition.Error != nil {
				return out, fmt.Errorf("read %q: %w", topic, e.TopicPartition.Error)
			}
			p := e.TopicPartition.Partition
			out[p] = append(out[p], e)
			if int64(e.TopicPartition.Offset)+1 >= ends[p] {
				done[p] = true
			}
		case kafka.PartitionEOF:
			// Under read_committed the end is the last stable offset: a trailing commit marker or aborted
			// records never arrive as messages, so EOF at or past the start's high watermark means done.
			if int64(e.Offset) >= ends[e.Partition] {
				done[e.Partition] = true
			}
		case kafka.Error:
			if e.IsFatal() {
				return out, fmt.Errorf("read %q: %w", topic, e)
			}
		}
	}
	return out, nil
}

// WaitSettled waits until no transaction is open on any partition of topics (empty names are skipped): until a
// read_committed reader's end of each partition (its last stable offset) is the partition's high watermark.
func WaitSettled(ctx context.Context, bootstrap string, topics []string) error {
	clients := map[string]*kafka.Consumer{}
	for _, level := range []string{"read_committed", "read_uncommitted"} {
		c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": "kafkatest-settle",
			"isolation.level": level, "log_level": 3})
		if err != nil {
			return fmt.Errorf("create %s client: %w", level, err)
		}
		defer c.Close()
		clients[level] = c
	}
	for {
		open, err := openTransactions(clients["read_committed"], clients["read_uncommitted"], topics)
		if err == nil && open == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for open transactions on %v to end (%d partitions still open, last error %v): %w",
				topics, open, err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// openTransactions counts the partitions of topics whose last stable offset is below their high watermark.
func openTransactions(committed, uncommitted *kafka.Consumer, topics []string) (int, error) {
	open := 0
	for _, topic := range topics {
		if topic == "" {
			continue
		}
		md, err := committed.GetMetadata(&topic, false, 5000)
		if err != nil {
			return 0, err
		}
		for _, p := range md.Topics[topic].Partitions {
			_, stable, err := committed.QueryWatermarkOffsets(topic, p.ID, 5000)
			if err != nil {
				return 0, err
			}
			_, high, err := uncommitted.QueryWatermarkOffsets(topic, p.ID, 5000)
			if err != nil {
				return 0, err
			}
			if stable < high {
				open++
			}
		}
	}
	return open, nil
}

// Records makes n test records for topic, numbered from first: record i has key "key-<i>", value "value-<i>"
// padded with '.' to valueSize bytes (when larger), and goes to partition i mod partitions.
func Records(topic string, partitions, first, n, valueSize int) []*kafka.Message {
	msgs := make([]*kafka.Message, n)
	for j := range msgs {
		i := first + j
		value := []byte("value-" + strconv.Itoa(i))
		if len(value) < valueSize {
			value = append(value, bytes.Repeat([]byte{'.'}, valueSize-len(value))...)
		}
		msgs[j] = &kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: int32(i % partitions)},
			Key:            []byte("key-" + strconv.Itoa(i)),
			Value:          value,
		}
	}
	return msgs
}

// Lag is how many records of topics the group has not committed yet: per partition, the high watermark minus
// the committed offset (minus the low watermark when nothing is committed). Zero means caught up.
func Lag(ctx context.Context, bootstrap, group string, topics []string) (int64, error) {
	var lag int64
	err := withCommitted(ctx, bootstrap, group, topics, func(handle *kafka.Consumer, committed []kafka.TopicPartition) error {
		for _, tp := range committed {
			low, high, err := handle.QueryWatermarkOffsets(*tp.Topic, tp.Partition, 10000)
			if err != nil {
				return fmt.Errorf("watermarks of %s: %w", tp, err)
			}
			committed := int64(tp.Offset)
			if committed < 0 {
				committed = low
			}
			lag += high - committed
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("lag of group %q: %w", group, err)
	}
	return lag, nil
}

// Committed returns the group's committed offset of every partition of topic, -1 where none is committed.
func Committed(ctx context.Context, bootstrap, group, topic string) (map[int32]int64, error) {
	offsets := map[int32]int64{}
	err := withCommitted(ctx, bootstrap, group, []string{topic}, func(_ *kafka.Consumer, committed []kafka.TopicPartition) error {
		for _, tp := range committed {
			offsets[tp.Partition] = max(int64(tp.Offset), -1)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %q: %w", group, err)
	}
	return offsets, nil
}

// withCommitted reads the group's committed offsets of every partition of topics and hands them to use, with
// the client that read them.
func withCommitted(ctx context.Context, bootstrap, group string, topics []string, use func(*kafka.Consumer, []kafka.TopicPartition) error) error {
	// A consumer of the group that never subscribes (so never joins it) reads the committed offsets through its
	// group coordinator and answers watermark queries. Not the admin client's ListConsumerGroupOffsets: librdkafka
	// (issue 5040, still in 2.11) crashes the process when that request meets a coordinator that moved or is still
	// loading the group, as a group seen for the first time often is. The offsets read are those of committed
	// transactions; a pending transaction's are not seen (nor waited for: the consumer is not read_committed).
	handle, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": group,
		"enable.auto.commit": false, "log_level": 3})
	if err != nil {
		return fmt.Errorf("create consumer: %w", err)
	}
	defer handle.Close()
	md, err := handle.GetMetadata(nil, true, 10000)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	var partitions []kafka.TopicPartition
	for _, topic := range topics {
		tm, ok := md.Topics[topic]
		if !ok {
			return fmt.Errorf("no topic %q", topic)
		}
		for _, p := range tm.Partitions {
			partitions = append(partitions, kafka.TopicPartition{Topic: &topic, Partition: p.ID})
		}
	}
	committed, err := committedOffsets(ctx, handle, partitions)
	if err != nil {
		return err
	}
	return use(handle, committed)
}

// committedOffsets asks handle's group coordinator, waiting at most until ctx's deadline (or 10 s).
func committedOffsets(ctx context.Context, handle *kafka.Consumer, partitions []kafka.TopicPartition) ([]kafka.TopicPartition, error) {
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	offsets, err := handle.Committed(partitions, int(timeout.Milliseconds()))
	if err != nil {
		return nil, fmt.Errorf("committed offsets: %w", err)
	}
	return offsets, nil
}
